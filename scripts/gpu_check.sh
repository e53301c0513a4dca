#!/usr/bin/env bash
# Every GPU check of depthcli in ONE run, for a lent NVIDIA machine whose time is short:
#   1. what the machine is (nvidia-smi, torch, CUDA);
#   2. the CUDA tests (tests/test_cuda.py) plus the model parity suite on the GPU;
#   3. the GPU table: vitl fp16 at the seed's seven sizes, depthcli vs transformers, ms and VRAM;
#   4. end-to-end `depthcli video` on a 1080p clip, batch 1 vs batch 8 (model-only vs end-to-end fps).
# Results go to one folder ($OUT/gpu when the device tool's $OUT is set, else ./gpu-results).
#
# The machine has torch, transformers, OpenCV, click, tqdm, safetensors and huggingface_hub but
# cannot reach a registry: depthcli runs from this checkout (PYTHONPATH, `python -m depthcli`),
# and the few wheels it lacks travel in .whl/ (fetch them here first: scripts/gpu_wheels.sh).
#
#   device run:  bash scripts/gpu_check.sh        (carry: .whl; timeout_s: 600)
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${OUT:+$OUT/gpu}
RESULTS=${RESULTS:-gpu-results}
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || echo "gpu_check: carried wheels did not install" | tee -a "$RESULTS/summary.txt"
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} 2>&1 | tee "$RESULTS/machine.txt"

# 2. tests: the CUDA ones and the parity suite, on the GPU (the CLI runs as `python -m depthcli`)
timeout 240 $PY -m pytest -q -rs -s tests/test_cuda.py tests/test_model_parity.py -p no:cacheprovider \
    2>&1 | tee "$RESULTS/tests.txt" | tail -n 25

# 3. the GPU table (vitl fp16, 252..1904 px), weights built once from a fixed seed
timeout 240 $PY scripts/bench.py --device cuda --gpu-table --weights-dir /tmp/depthcli-bench \
    --out "$RESULTS/gpu_table.md" --json "$RESULTS/gpu_table.json" > "$RESULTS/gpu_table.log" 2>&1
tail -n 15 "$RESULTS/gpu_table.md" 2>/dev/null || tail -n 15 "$RESULTS/gpu_table.log"

# 4. end to end on a 1080p clip with the same vitl weights: batch 1 vs batch 8
timeout 100 $PY - "$RESULTS" <<'EOF'
import subprocess, sys, pathlib, cv2, numpy as np
res = pathlib.Path(sys.argv[1])
clip = pathlib.Path("/tmp/clip1080.mp4")
w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30, (1920, 1080))
rng = np.random.default_rng(0)
base = cv2.resize(rng.integers(0, 255, (68, 120, 3), dtype=np.uint8), (1920, 1080), interpolation=cv2.INTER_CUBIC)
for i in range(90):
    w.write(np.roll(base, 8 * i, axis=1))
w.release()
weights = next(pathlib.Path("/tmp/depthcli-bench").glob("*vitl*"), None)
if weights is None:
    sys.exit("no vitl weights from the bench step")
with open(res / "video.txt", "w") as log:
    for batch in ("1", "8"):
        p = subprocess.run([sys.executable, "-m", "depthcli", "video", str(clip), "--model", str(weights),
                            "--model-version", "2", "--device", "cuda", "--fp16", "--batch", batch,
                            "-o", "/tmp/video-out"], capture_output=True, text=True, timeout=45)
        last = [l for l in p.stderr.splitlines() if "end to end" in l]  # the summary line
        line = f"batch {batch}: rc {p.returncode}: {last[-1] if last else p.stderr.strip()[-300:]}"
        print(line)
        log.write(line + "\n")
EOF
echo "gpu_check: results in $RESULTS"
