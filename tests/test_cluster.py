"""``depthcli image --ray`` / ``depthcli video --ray`` on a real two-node Ray cluster on this
machine (head + worker, both bound to 127.0.0.1), started once for the module and stopped by
the fixture; the CLI runs as a user runs it, in a subprocess that joins the cluster by address.

Covered: a mixed batch (sizes, 8/16-bit, gray, bad and empty files, a subfolder) gives the
local run's outputs, lines and exit code; a node removed mid-run loses and duplicates nothing
and leaves no temporary file; --skip-existing resumes; videos, one task each, as locally;
an S3 round trip against a local S3-compatible server (moto); ``depthcli.cluster.add_depth`` on a
Ray Dataset; --ray without Ray installed is a usage error; --help never imports Ray.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_helpers import (
    SIZE_ARG,
    cli_env,
    depthcli_command,
    popen_cli,
    run_cli,
    stop_process,
    temp_leftovers,
    write_image,
    write_video,
)

pytest.importorskip("ray")
pytest.importorskip("pyarrow")

OBJECT_STORE = 100 * 2**20  # per node: small, the tests move kilobytes


@pytest.fixture(scope="module")
def s3_endpoint():
    """A local S3-compatible server (moto) on 127.0.0.1, or None when moto is not installed. Its
    variables are set before the cluster starts, so the Ray workers inherit them."""
    beside = Path(sys.executable).with_name("moto_server")  # the one the test extras installed, not
    server = str(beside) if beside.exists() else shutil.which("moto_server") or ""  # another Python's on PATH
    if not server or not Path(server).exists():
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                           "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                      AWS_DEFAULT_REGION="us-east-1")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        yield endpoint
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        stop_process(proc)


class RayCluster:
    def __init__(self) -> None:
        from ray.cluster_utils import Cluster

        t0 = time.perf_counter()
        self.cluster = Cluster(initialize_head=True, connect=False, head_node_args={
            "num_cpus": 2, "object_store_memory": OBJECT_STORE, "node_ip_address": "127.0.0.1",
            "include_dashboard": False})
        self.worker = self.add_worker()
        self.address = self.cluster.address  # the GCS: 127.0.0.1:<port>
        self.start_s = time.perf_counter() - t0

    def add_worker(self):  # noqa: ANN201 - ray's node handle
        node = self.cluster.add_node(num_cpus=2, object_store_memory=OBJECT_STORE, node_ip_address="127.0.0.1")
        self.cluster.wait_for_nodes()
        return node


@pytest.fixture(scope="module")
def ray_cluster(s3_endpoint):  # noqa: ANN001, ANN201
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # the workers inherit it: no spinning threads on 2 shared cores
    rc = RayCluster()
    print(f"\nray cluster (head + worker) started in {rc.start_s:.1f} s", file=sys.stderr)
    try:
        yield rc
    finally:
        rc.cluster.shutdown()
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old


@pytest.fixture
def model_args(tiny_ckpt: str) -> list[str]:
    return ["--model", tiny_ckpt, *SIZE_ARG]


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def error_lines(stderr: str) -> set[str]:
    return {line for line in stderr.splitlines() if line.startswith("depthcli: ") and "note:" not in line}


def assert_clean(proc: subprocess.CompletedProcess, code: int) -> None:
    assert proc.returncode == code, f"exit {proc.returncode}, stderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr


def mixed_batch(root: Path) -> Path:
    """Sizes, colour / gray / 16-bit, a subfolder, a non-image and an empty file."""
    src = root / "in"
    write_image(src / "a.png")
    write_image(src / "wide.jpg", 30, 90, 1)
    write_image(src / "sub" / "tall.png", 80, 40, 2, "gray")
    write_image(src / "sub" / "deep16.png", 50, 50, 3, "bgr16")
    write_image(src / "alpha.png", 40, 56, 4, "bgra")
    (src / "bad.png").write_bytes(b"this is not an image")
    (src / "empty.jpg").write_bytes(b"")
    return src


# ----------------------------------------------------------------------------------- no cluster
def test_ray_without_ray_installed_is_a_usage_error(tmp_path: Path, model_args: list[str]) -> None:
    """A Python where ``ray`` cannot be found (a meta-path finder refuses it): exit 2 with the
    install command, before anything is read or written."""
    write_image(tmp_path / "a.png")
    code = ("import sys\n"
            "class NoRay:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'ray' or name.startswith('ray.'):\n"
            "            raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, NoRay())\n"
            "from depthcli.cli.main import main\n"
            "sys.argv[0] = 'depthcli'\n"
            "main()\n")
    for command in (["image", str(tmp_path / "a.png")], ["video", str(tmp_path / "a.png")]):
        proc = subprocess.run([sys.executable, "-c", code, *command, "--ray", "local", *model_args],
                              capture_output=True, text=True, timeout=60, env=cli_env(), cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "pip install 'depthcli[ray]'" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


# ----------------------------------------------------------------------------------- images
def test_mixed_batch_matches_a_local_run(ray_cluster: RayCluster, tmp_path: Path, model_args: list[str]) -> None:
    src = mixed_batch(tmp_path)
    local = run_cli("image", src, "-r", "-o", tmp_path / "local", "-f", "npy", *model_args,
                    "--stats", tmp_path / "local.jsonl")
    t0 = time.perf_counter()
    ray = run_cli("image", src, "-r", "-o", tmp_path / "ray", "-f", "npy", *model_args,
                  "--stats", tmp_path / "ray.jsonl", "--ray", ray_cluster.address, timeout=300)
    print(f"ray image run: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    assert_clean(local, 1)
    assert_clean(ray, 1)
    names = files_under(tmp_path / "local")
    assert names == {"a_depth.npy", "wide_depth.npy", "alpha_depth.npy", "sub/tall_depth.npy",
                     "sub/deep16_depth.npy"}
    assert files_under(tmp_path / "ray") == names
    for name in names:
        a, b = np.load(tmp_path / "local" / name), np.load(tmp_path / "ray" / name)
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * float(np.abs(a).max()))
    # the same one-line errors, the same per-image lines (in completion order), the same stats
    assert error_lines(ray.stderr) == error_lines(local.stderr)
    assert {f"depthcli: {src / 'bad.png'}: not an image (or unsupported format)",
            f"depthcli: {src / 'empty.jpg'}: empty file"} <= error_lines(ray.stderr)
    assert "images/s end to end" in ray.stderr.splitlines()[-1]
    local_stats = {s["name"]: s for s in map(json.loads, (tmp_path / "local.jsonl").read_text().splitlines())}
    ray_stats = {s["name"]: s for s in map(json.loads, (tmp_path / "ray.jsonl").read_text().splitlines())}
    assert sorted(ray_stats) == sorted(local_stats) and len(ray_stats) == 5
    for name, s in ray_stats.items():
        assert (s["input_hw"], s["processed_hw"]) == (local_stats[name]["input_hw"],
                                                      local_stats[name]["processed_hw"])
    assert temp_leftovers(tmp_path) == []


def test_skip_existing_resumes_on_the_cluster(ray_cluster: RayCluster, tmp_path: Path,
                                              model_args: list[str]) -> None:
    src = tmp_path / "in"
    for i, name in enumerate(("a", "b", "c")):
        write_image(src / f"{name}.png", 40 + 8 * i, 56, i)
    out = tmp_path / "out"
    first = run_cli("image", src / "a.png", src / "b.png", "-o", out, *model_args)
    assert_clean(first, 0)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    resumed = run_cli("image", src, "-o", out, "--skip-existing", *model_args, "--ray", ray_cluster.address,
                      timeout=300)
    assert_clean(resumed, 0)
    assert "skipped 2 inputs whose output exists" in resumed.stderr
    assert files_under(out) == {"a_depth.png", "b_depth.png", "c_depth.png"}
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name in before} == before
    again = run_cli("image", src, "-o", out, "--skip-existing", *model_args, "--ray", ray_cluster.address,
                    timeout=300)
    assert_clean(again, 0)
    assert "skipped 3 inputs whose output exists" in again.stderr


def test_s3_round_trip(ray_cluster: RayCluster, s3_endpoint: str | None, tmp_path: Path,
                       model_args: list[str]) -> None:
    """Inputs listed from and outputs written to s3:// on a local S3-compatible server: the
    same names (folders mirrored) and the same pictures as a local run."""
    if s3_endpoint is None:
        pytest.skip("moto is not installed (pip install 'moto[server]')")
    from pyarrow import fs

    src = tmp_path / "in"
    write_image(src / "a.png")
    write_image(src / "sub" / "b.jpg", 60, 40, 1)
    (src / "sub" / "bad.png").write_bytes(b"junk")
    s3 = fs.S3FileSystem(endpoint_override=s3_endpoint.split("://")[1], scheme="http", region="us-east-1",
                         allow_bucket_creation=True)
    s3.create_dir("bkt")
    for path in src.rglob("*.*"):
        with s3.open_output_stream(f"bkt/photos/{path.relative_to(src).as_posix()}") as f:
            f.write(path.read_bytes())
    local = run_cli("image", src, "-r", "-o", tmp_path / "local", *model_args)
    ray = run_cli("image", "s3://bkt/photos", "-r", "-o", "s3://bkt/depth", *model_args,
                  "--ray", ray_cluster.address, timeout=300)
    assert_clean(local, 1)
    assert_clean(ray, 1)
    assert "depthcli: s3://bkt/photos/sub/bad.png: not an image (or unsupported format)" in ray.stderr
    written = sorted(i.path for i in s3.get_file_info(fs.FileSelector("bkt/depth", recursive=True))
                     if i.type == fs.FileType.File)
    assert written == ["bkt/depth/a_depth.png", "bkt/depth/sub/b_depth.png"]
    for key in written:
        with s3.open_input_stream(key) as f:
            remote = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_UNCHANGED)
        mine = cv2.imread(str(tmp_path / "local" / key.removeprefix("bkt/depth/")), cv2.IMREAD_UNCHANGED)
        assert remote.shape == mine.shape
        assert np.abs(remote.astype(int) - mine.astype(int)).max() <= 1
    resumed = run_cli("image", "s3://bkt/photos", "-r", "-o", "s3://bkt/depth", "--skip-existing", *model_args,
                      "--ray", ray_cluster.address, timeout=300)
    assert "skipped 2 inputs whose output exists" in resumed.stderr, resumed.stderr


def test_add_depth_to_a_ray_dataset(ray_cluster: RayCluster, tmp_path: Path, tiny_ckpt: str) -> None:
    """The Python entry point: a dataset of encoded images gains the raw depth that
    ``depthcli image -f npy`` writes, and a one-line error for a bad image, on the cluster."""
    src = tmp_path / "in"
    write_image(src / "a.png")
    write_image(src / "b.jpg", 60, 40, 1)
    (src / "bad.png").write_bytes(b"junk")
    local = run_cli("image", src, "-o", tmp_path / "local", "-f", "npy", "--model", tiny_ckpt, *SIZE_ARG)
    assert_clean(local, 1)
    script = ("import os, sys\n"
              "os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'] = '0'  # keep the 127.0.0.1 address as given\n"
              "from pathlib import Path\n"
              "import numpy as np, ray, depthcli.cluster\n"
              "address, model, out, *paths = sys.argv[1:]\n"
              "ray.init(address=address, log_to_driver=False)\n"
              "rows = [{'name': Path(p).stem, 'image': Path(p).read_bytes()} for p in paths]\n"
              "ds = depthcli.cluster.add_depth(ray.data.from_items(rows), model=model, size=70)\n"
              "for row in ds.iter_rows():\n"
              "    if row['depth_error'] is None:\n"
              "        np.save(Path(out) / (row['name'] + '.npy'), np.asarray(row['depth']))\n"
              "    else:\n"
              "        print(row['name'], row['depth_error'])\n")
    out = tmp_path / "api"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", script, ray_cluster.address, tiny_ckpt, out,
                           *sorted(src.iterdir())], capture_output=True, text=True, timeout=300, env=cli_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "bad not an image (or unsupported format)"
    assert sorted(p.name for p in out.iterdir()) == ["a.npy", "b.npy"]
    for stem in ("a", "b"):
        np.testing.assert_allclose(np.load(out / f"{stem}.npy"), np.load(tmp_path / "local" / f"{stem}_depth.npy"),
                                   rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------- videos
def test_videos_one_task_each_as_locally(ray_cluster: RayCluster, tmp_path: Path, model_args: list[str]) -> None:
    clips = [write_video(tmp_path / "clips" / "one.mp4", n=8), write_video(tmp_path / "clips" / "two.mp4", n=6)]
    broken = tmp_path / "clips" / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    args = [*clips, broken, "--frames", "npy", *model_args, "--stats"]
    local = run_cli("video", *args, tmp_path / "l.jsonl", "-o", tmp_path / "local")
    ray = run_cli("video", *args, tmp_path / "r.jsonl", "-o", tmp_path / "ray", "--ray", ray_cluster.address,
                  timeout=300)
    assert_clean(local, 1)
    assert_clean(ray, 1)
    assert error_lines(ray.stderr) == error_lines(local.stderr)
    names = files_under(tmp_path / "local")
    assert files_under(tmp_path / "ray") == names
    assert {"one_depth.mp4", "two_depth.mp4"} <= names and len([n for n in names if n.endswith(".npy")]) == 14
    for name in names:
        if name.endswith(".npy"):
            np.testing.assert_allclose(np.load(tmp_path / "ray" / name), np.load(tmp_path / "local" / name),
                                       rtol=1e-5, atol=1e-6)
    for clip in ("one", "two"):
        cap = cv2.VideoCapture(str(tmp_path / "ray" / f"{clip}_depth.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == {"one": 8, "two": 6}[clip]
        cap.release()
    assert ray.stderr.count("frames/s end to end") == 2
    assert temp_leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------- faults
def test_a_node_removed_mid_run_loses_and_duplicates_nothing(ray_cluster: RayCluster, tmp_path: Path,
                                                             model_args: list[str]) -> None:
    """The worker node is removed while the batch runs: its tasks and actor are re-run on the
    head; every output is there once and whole, no temporary file is left, exit 0."""
    src = tmp_path / "in"
    n = 48
    for i in range(n):
        write_image(src / f"img{i:03d}.png", 120, 160, i)
    out = tmp_path / "out"
    proc = popen_cli("image", src, "-o", out, "-f", "npy", *model_args, "--size", "140",
                     "--ray", ray_cluster.address, "--ray-batch", "1", "--ray-actors", "2",
                     "--stats", tmp_path / "stats.jsonl", stderr_path=tmp_path / "stderr.txt")
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and len(list(out.glob("*.npy"))) < 4:
            assert time.monotonic() < deadline, "no output appeared"
            time.sleep(0.1)
        done_before = len(list(out.glob("*.npy")))
        assert proc.poll() is None and done_before < n, "the run ended before the node could be removed"
        ray_cluster.cluster.remove_node(ray_cluster.worker)
        rc = proc.wait(timeout=300)
    finally:
        stop_process(proc)
        ray_cluster.worker = ray_cluster.add_worker()  # for any test after this one
    stderr = (tmp_path / "stderr.txt").read_text()
    assert rc == 0, stderr
    assert "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == [f"img{i:03d}_depth.npy" for i in range(n)]
    for p in out.iterdir():
        assert np.load(p).shape == (120, 160)
    stats = [json.loads(line)["name"] for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert sorted(stats) == sorted(str(src / f"img{i:03d}.png") for i in range(n))  # each once
    assert temp_leftovers(tmp_path) == []
    print(f"node removed after {done_before}/{n} outputs", file=sys.stderr)


def test_cli_help_does_not_import_ray() -> None:
    code = ("import sys\nfrom depthcli.cli.main import main\nsys.argv = ['depthcli', 'image', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'ray' not in sys.modules and 'pyarrow' not in sys.modules, 'ray imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=cli_env())
    assert proc.returncode == 0, proc.stderr
    assert "--ray ADDRESS" in proc.stdout
    assert depthcli_command()  # the installed entry point exists (the other tests run it)
