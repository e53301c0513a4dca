"""``depthcli serve`` end to end: real server processes on 127.0.0.1 (a free port chosen by the
OS, ``--port 0``), the tiny random model, plain HTTP from the standard library; the page in a real
headless Chromium when one is installed.

Covered: the API's outputs against ``depthcli image`` (npy and PNG byte for byte), /v1/info and
/healthz, every refusal (bad parameters, corrupt, empty and oversized uploads, wrong Host or
Origin, unknown paths) with the server still answering afterwards, concurrent clients, a full
queue (503 + Retry-After), clients that leave (while uploading, and while queued: the model does
not run for them), the token, shutdown on SIGTERM with a request in flight, ``depthcli image
--server``, and the browser page (image and video, depth and 3D canvas drawn).

Slow uploads (headers and part of the body, the rest held back) keep requests in flight for
exactly as long as a test needs, so nothing here depends on timing.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import lines, run_cli, stop_process, write_image
from serve_helpers import MODEL_OPTS, Reply, Server, npy_of, post_image, request, running, start_server

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("python_multipart")

UPLOAD_LIMIT_MB = 0.25


@pytest.fixture(scope="module")
def server(tiny_ckpt: str, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """The shared server: queue 8, uploads up to 256 KiB."""
    with running(tmp_path_factory.mktemp("serve"), tiny_ckpt, "--queue", "8",
                 "--max-upload", str(UPLOAD_LIMIT_MB)) as s:
        yield s


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("serve-images")
    paths = [root / f"img{i}.png" for i in range(3)]
    for i, path in enumerate(paths):
        write_image(path, h=40 + 8 * i, w=64, seed=i)
    return paths


@pytest.fixture(scope="module")
def local_outputs(images: list[Path], tiny_ckpt: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `depthcli image` writes for the images, npy and colour PNG, with the model loaded here."""
    out = tmp_path_factory.mktemp("local-out")
    for fmt in ("npy", "color"):
        proc = run_cli("image", *images, "-o", out, "-f", fmt, "--model", tiny_ckpt, *MODEL_OPTS)
        assert proc.returncode == 0, proc.stderr
    return out


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = "depthcli-test-boundary-7d1f"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def info(server: Server) -> dict:
    reply = request(server, "GET", "/v1/info")
    assert reply.status == 200, reply
    return reply.json()


def wait_until(predicate, what: str, timeout: float = 60):  # noqa: ANN001, ANN201
    """Poll ``predicate()`` until truthy (the server's own counters: no sleeping for a guess)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class SlowUpload:
    """A POST whose headers and first body bytes are sent, the rest held back until ``finish``."""

    def __init__(self, server: Server, data: bytes, query: str = "format=npy", hold: int = 10) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=120)
        self.data, self.hold = data, hold
        head = (f"POST /v1/depth?{query} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n"
                f"Connection: close\r\n\r\n").encode()
        self.sock.sendall(head + data[:len(data) - hold])

    def finish(self) -> Reply:
        self.sock.sendall(self.data[len(self.data) - self.hold:])
        response = http.client.HTTPResponse(self.sock)
        response.begin()
        reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        self.sock.close()
        return reply

    def abandon(self) -> None:
        self.sock.close()


# ----------------------------------------------------------------------------------- the API
def test_outputs_are_the_files_depthcli_image_writes(server: Server, images: list[Path],
                                                     local_outputs: Path) -> None:
    for path in images:
        data = path.read_bytes()
        raw = post_image(server, data, "format=npy")
        assert raw.status == 200, raw
        assert raw.body == (local_outputs / f"{path.stem}_depth.npy").read_bytes()
        depth = npy_of(raw.body)
        assert raw.headers["x-depthcli-input-hw"] == "{},{}".format(*depth.shape)
        assert float(raw.headers["x-depthcli-infer-ms"]) > 0
        assert float(raw.headers["x-depthcli-total-ms"]) >= float(raw.headers["x-depthcli-infer-ms"])
        assert re.fullmatch(r"70,\d+", raw.headers["x-depthcli-network-hw"])
        # a multipart upload (what an HTML form or `curl -F image=@...` sends) gives the same
        body, ctype = multipart("image", path.name, data)
        form = request(server, "POST", "/v1/depth?format=npy", body, {"Content-Type": ctype})
        assert form.status == 200 and form.body == raw.body
        # the colour PNG, metadata included, when the input is named as `depthcli image` names it
        png = post_image(server, data, "format=color", **{"X-Depthcli-Name": path.name})
        assert png.status == 200 and png.headers["content-type"] == "image/png"
        assert png.body == (local_outputs / f"{path.stem}_depth.png").read_bytes()
        meta = json.loads(png.headers["x-depthcli-metadata"])
        assert meta["input"] == path.name and meta["format"] == "color"


def test_the_download_name_keeps_the_clients_file_name(server: Server, images: list[Path]) -> None:
    """#25 item 18: café.jpg was answered as caf__depth.png. The name is kept (RFC 5987
    filename*), an ASCII filename= beside it; a folder in the name never reaches it."""
    from urllib.parse import quote

    data = images[0].read_bytes()
    for given, ascii_name, utf8_name in (("café.jpg", "cafe_depth.png", "café_depth.png"),
                                         ("../../etc/x.jpg", "x_depth.png", None),
                                         ("plain.jpg", "plain_depth.png", None)):
        reply = post_image(server, data, "format=color", **{"X-Depthcli-Name": quote(given)})
        assert reply.status == 200, reply
        expected = f'inline; filename="{ascii_name}"'
        if utf8_name:
            expected += f"; filename*=UTF-8''{quote(utf8_name)}"
        assert reply.headers["content-disposition"] == expected
        assert json.loads(reply.headers["x-depthcli-metadata"])["input"] == given  # recorded as given


def test_info_and_healthz(server: Server, tiny_ckpt: str) -> None:
    from depthcli.jobs.image import FORMATS

    assert request(server, "GET", "/healthz").json() == {"status": "ok"}
    data = info(server)
    assert data["api"] == 1 and data["model"] == tiny_ckpt
    assert data["formats"] == dict(FORMATS)
    assert data["size"] == 70 and data["backend"] == "torch" and data["device"] == "cpu"
    assert data["limits"]["max_upload_bytes"] == int(UPLOAD_LIMIT_MB * 1024 * 1024)
    assert data["limits"]["queue"] == 8 and data["auth"] is False
    assert "inferno" in data["colormaps"]


@pytest.mark.parametrize(("query", "fragment"), [
    ("format=tiff", "format 'tiff'"),
    ("colormap=nope", "colormap 'nope'"),
    ("invert=maybe", "invert="),
    ("format=npy&side_by_side=1", "side_by_side needs"),
    ("path=/etc/passwd", "unknown parameter 'path'"),
    ("format=npy&format=color", "given twice"),
    ("format=ply", "metric"),
])
def test_bad_parameters_are_400(server: Server, images: list[Path], query: str, fragment: str) -> None:
    reply = post_image(server, images[0].read_bytes(), query)
    assert reply.status == 400, reply
    assert fragment in reply.json()["error"]


def test_bad_uploads_get_json_errors_and_the_server_carries_on(server: Server, images: list[Path]) -> None:
    good = images[0].read_bytes()
    cases = [
        (post_image(server, b"", "format=npy"), 400, "empty"),
        (post_image(server, b"just some text, not an image", "format=npy"), 415, "not an image"),
        (post_image(server, good[: len(good) // 2], "format=npy"), 415, "truncated or corrupt"),
        (post_image(server, b"\x89PNG\r\n\x1a\n" + os.urandom(2000), "format=npy"), 415, ""),
        (request(server, "POST", "/v1/depth", *multipart("photo", "a.png", good)[:1],
                 {"Content-Type": multipart("photo", "a.png", good)[1]}), 400, "field named 'image'"),
        (request(server, "POST", "/v1/depth", b"--x\r\ngarbage", {"Content-Type": "multipart/form-data; boundary=x"}),
         400, ""),
        (request(server, "GET", "/v1/depth"), 405, ""),
        (request(server, "GET", "/v1/nothing"), 404, ""),
        (request(server, "GET", "/static/../app.py"), 404, ""),
        (request(server, "GET", "/static/%2e%2e/app.py"), 404, ""),
        (request(server, "GET", "/v1/info", headers={"Host": "attacker.example"}), 421, "unexpected Host"),
        (request(server, "POST", "/v1/depth", good, {"Origin": "http://attacker.example"}), 403, "cross-origin"),
    ]
    for reply, status, fragment in cases:
        assert reply.status == status, reply
        assert fragment in reply.json()["error"], reply
    assert post_image(server, good).status == 200
    assert "Traceback" not in server.stderr()


def test_oversized_uploads_are_cut_off_while_streaming(server: Server, images: list[Path]) -> None:
    limit = int(UPLOAD_LIMIT_MB * 1024 * 1024)
    # declared too large: refused before a byte of the body is read
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    conn.putrequest("POST", "/v1/depth")
    conn.putheader("Content-Length", str(10 * limit))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and "limit" in json.loads(response.read())["error"]
    conn.close()
    # no length given (chunked): cut off once the limit is passed, however much more would come
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    conn.putrequest("POST", "/v1/depth?format=npy")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b"\0" * 65536
    sent = 0
    try:
        while sent <= 4 * limit:
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed: exactly what is being tested
    response = conn.getresponse()
    assert response.status == 413 and "limit" in json.loads(response.read())["error"]
    conn.close()
    assert post_image(server, images[0].read_bytes()).status == 200


def test_concurrent_clients_get_their_own_results(server: Server, images: list[Path],
                                                  local_outputs: Path) -> None:
    expected = {p.name: (local_outputs / f"{p.stem}_depth.npy").read_bytes() for p in images}
    results: list[tuple[str, Reply]] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        for k in range(2):
            path = images[(i + k) % len(images)]
            reply = post_image(server, path.read_bytes())
            with lock:
                results.append((path.name, reply))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]  # 6 < queue 8 + 1
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 12
    for name, reply in results:
        assert reply.status == 200, reply
        assert reply.body == expected[name]


def test_a_full_server_answers_503_with_retry_after(server: Server, images: list[Path],
                                                  local_outputs: Path) -> None:
    data = images[1].read_bytes()
    before = info(server)["load"]
    capacity = info(server)["limits"]["queue"] + 1
    held = [SlowUpload(server, data) for _ in range(capacity)]
    try:
        wait_until(lambda: info(server)["load"]["in_flight"] == capacity, "every place taken")
        busy = post_image(server, data)
        assert busy.status == 503, busy
        assert int(busy.headers["retry-after"]) >= 1 and "busy" in busy.json()["error"]
    finally:
        replies = [upload.finish() for upload in held]
    expected = (local_outputs / f"{images[1].stem}_depth.npy").read_bytes()
    assert all(r.status == 200 and r.body == expected for r in replies), [r.status for r in replies]
    after = info(server)["load"]
    assert after["rejected_busy"] == before["rejected_busy"] + 1
    assert post_image(server, data).status == 200


def test_a_client_that_leaves_while_uploading_costs_nothing(server: Server, images: list[Path]) -> None:
    before = info(server)["load"]
    upload = SlowUpload(server, images[0].read_bytes())
    wait_until(lambda: info(server)["load"]["in_flight"] == 1, "the upload admitted")
    upload.abandon()
    after = wait_until(lambda: (lambda load: load if load["in_flight"] == 0 else None)(info(server)["load"]),
                       "the place freed")
    assert after["client_gone"] == before["client_gone"] + 1
    assert after["model_runs"] == before["model_runs"]


def test_a_client_that_leaves_while_queued_never_reaches_the_model(tiny_ckpt: str, images: list[Path]) -> None:
    """In-process (the model held at a gate by the test, so a second request is certainly
    queued behind it): the second client disconnects, the model never runs for it."""
    import uvicorn

    from depthcli.runtime.loading import build_predictor
    from depthcli.runtime.spec import PredictorSpec
    from depthcli.serve.app import ServeSettings, create_app
    from depthcli.serve.server import bind

    class GatedPredictor:
        def __init__(self, predictor) -> None:  # noqa: ANN001
            self._predictor, self.gate, self.ran = predictor, threading.Event(), []

        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(self._predictor, name)

        def infer(self, prepared):  # noqa: ANN001, ANN202
            self.ran.append(prepared.name)
            assert self.gate.wait(120)
            return self._predictor.infer(prepared)

    gated = GatedPredictor(build_predictor(PredictorSpec(model=tiny_ckpt, size=70, backend="torch")))
    settings = ServeSettings(model=tiny_ckpt, queue=4, size=70)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(create_app(gated, settings), http="h11", loop="asyncio",
                                       lifespan="on", log_level="warning", access_log=False))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    here = Server(None, f"http://127.0.0.1:{port}/", "127.0.0.1", port, Path(os.devnull))
    load = settings.counters
    try:
        wait_until(lambda: uv.started, "the in-process server")
        first: list[Reply] = []
        a = threading.Thread(target=lambda: first.append(post_image(here, images[0].read_bytes(),
                                                                    **{"X-Depthcli-Name": "first.png"})))
        a.start()
        wait_until(lambda: gated.ran == ["first.png"], "the first request at the model")
        second = SlowUpload(here, images[1].read_bytes(), hold=0)  # sent whole; it waits for the model
        wait_until(lambda: load.waiting == 1, "the second request queued")
        second.abandon()
        wait_until(lambda: load.client_gone == 1, "the disconnect noticed")
        gated.gate.set()
        a.join(timeout=120)
        wait_until(lambda: load.waiting == 0 and load.in_flight == 0, "the queue drained")
        assert first and first[0].status == 200
        assert gated.ran == ["first.png"] and load.model_runs == 1
    finally:
        gated.gate.set()
        uv.should_exit = True
        thread.join(timeout=60)
        sock.close()


# ----------------------------------------------------------------------------------- token, host, stop
def test_token_is_required_on_the_api_when_set(tiny_ckpt: str, images: list[Path], tmp_path: Path) -> None:
    with running(tmp_path, tiny_ckpt, env={"DEPTHCLI_TOKEN": "s3cret-token"}) as s:
        no_token = request(s, "GET", "/v1/info")
        assert no_token.status == 401 and "token" in no_token.json()["error"]
        assert no_token.headers["www-authenticate"].startswith("Bearer")
        assert request(s, "GET", "/v1/info", headers={"Authorization": "Bearer wrong"}).status == 401
        assert request(s, "GET", "/v1/info", headers={"Authorization": "Basic s3cret-token"}).status == 401
        assert post_image(s, images[0].read_bytes()).status == 401
        ok = post_image(s, images[0].read_bytes(), Authorization="Bearer s3cret-token")
        assert ok.status == 200
        assert request(s, "GET", "/v1/info", headers={"Authorization": "Bearer s3cret-token"}).json()["auth"] is True
        # the page and the health check hold nothing secret (a browser cannot send a header on a navigation)
        assert request(s, "GET", "/").status == 200 and request(s, "GET", "/healthz").status == 200
        # the client: without the token a usage error, with it the output
        refused = run_cli("image", images[0], "-o", tmp_path / "out", "--server", s.url)
        assert refused.returncode == 2 and "token" in refused.stderr, refused.stderr
        accepted = run_cli("image", images[0], "-o", tmp_path / "out", "--server", s.url,
                           env={"DEPTHCLI_TOKEN": "s3cret-token"})
        assert accepted.returncode == 0, accepted.stderr


def test_a_network_address_needs_a_token_and_a_busy_port_fails_fast(tiny_ckpt: str) -> None:
    proc = run_cli("serve", "--host", "0.0.0.0", "--model", tiny_ckpt)
    assert proc.returncode == 2 and "--token" in proc.stderr, proc.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        proc = run_cli("serve", "--port", taken.getsockname()[1], "--model", tiny_ckpt)
    assert proc.returncode == 2 and "cannot listen" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_sigterm_finishes_the_request_in_flight_then_exits_0(tiny_ckpt: str, images: list[Path],
                                                            local_outputs: Path, tmp_path: Path) -> None:
    s = start_server(tmp_path, tiny_ckpt)
    try:
        upload = SlowUpload(s, images[2].read_bytes())
        wait_until(lambda: info(s)["load"]["in_flight"] == 1, "the upload admitted")
        s.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "stopping" in s.stderr(), "the server to say it stops")
        reply = upload.finish()
        assert reply.status == 200
        assert reply.body == (local_outputs / f"{images[2].stem}_depth.npy").read_bytes()
        assert s.proc.wait(timeout=120) == 0, s.stderr()
    finally:
        stop_process(s.proc)
    assert "every admitted request was answered" in s.stderr()
    assert "Traceback" not in s.stderr()
    with pytest.raises(OSError):  # and the port is closed
        socket.create_connection((s.host, s.port), timeout=5).close()


def test_help_is_instant_and_lists_the_options() -> None:
    proc = run_cli("serve", "--help")
    assert proc.returncode == 0
    text = proc.stdout.decode()
    for option in ("--host", "--port", "--open", "--token", "--queue", "--max-upload", "--model", "--size"):
        assert option in text


def test_without_the_serve_extra_one_line_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from depthcli.cli.main import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # what an install without the extra looks like
    result = CliRunner().invoke(main, ["serve", "--model", "unused.safetensors"])
    assert result.exit_code == 2, result.output
    assert "depthcli serve needs uvicorn: pip install 'depthcli[serve]'" in result.output


# ----------------------------------------------------------------------------------- the client
def test_image_server_client_writes_what_the_local_command_writes(server: Server, images: list[Path],
                                                                  local_outputs: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    for fmt in ("npy", "color"):
        out = tmp_path / f"remote-{fmt}"
        proc = run_cli("image", *images, bad, "-o", out, "-f", fmt, "--server", server.url,
                       "--stats", tmp_path / f"{fmt}.jsonl")
        assert proc.returncode == 1, proc.stderr  # bad.png failed, the rest were written
        assert "Traceback" not in proc.stderr
        suffix = "npy" if fmt == "npy" else "png"
        for path in images:
            written = (out / f"{path.stem}_depth.{suffix}").read_bytes()
            assert written == (local_outputs / f"{path.stem}_depth.{suffix}").read_bytes(), path
        err = lines(proc.stderr)
        assert any(line.startswith(f"depthcli: {bad}: server: HTTP 415:") for line in err), err
        for path in images:
            line_re = re.compile(rf"^{re.escape(str(path))}: 64x\d+ -> \d+x70, \d+ ms .* -> ")
            assert any(line_re.match(line) for line in err), err
        stats = [json.loads(line) for line in (tmp_path / f"{fmt}.jsonl").read_text().splitlines()]
        assert [s["name"] for s in stats] == [str(p) for p in images]
    # stdin to stdout
    piped = run_cli("image", "-", "-o", "-", "-f", "npy", "--server", server.url, input=images[0].read_bytes())
    assert piped.returncode == 0 and np.array_equal(
        npy_of(piped.stdout), np.load(local_outputs / f"{images[0].stem}_depth.npy"))


def test_image_server_client_errors(server: Server, images: list[Path], tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    proc = run_cli("image", images[0], "-o", tmp_path, "--server", dead)
    assert proc.returncode == 4 and "cannot reach" in proc.stderr, proc.stderr
    proc = run_cli("image", images[0], "-o", tmp_path, "--server", server.url, "--size", "140")
    assert proc.returncode == 2 and "--size" in proc.stderr, proc.stderr
    proc = run_cli("image", images[0], "-o", tmp_path, "-f", "ply", "--server", server.url)
    assert proc.returncode == 2 and "metric" in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("*_depth.*"))


# ----------------------------------------------------------------------------------- the page
PIXELS_JS = """(() => {
  const count = (source, w, h, background) => {
    const c = document.createElement('canvas'); c.width = w; c.height = h;
    const ctx = c.getContext('2d'); ctx.drawImage(source, 0, 0, w, h);
    const d = ctx.getImageData(0, 0, w, h).data; const colours = new Set(); let foreground = 0;
    for (let i = 0; i < d.length; i += 4) {
      colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      const off = Math.abs(d[i] - background[0]) + Math.abs(d[i + 1] - background[1])
        + Math.abs(d[i + 2] - background[2]);
      if (off > 12) foreground++;
    }
    return {w, h, colours: colours.size, foreground: foreground / (w * h)};
  };
  const img = document.getElementById('depth'), gl = document.querySelector('#view canvas');
  return {depth: count(img, img.naturalWidth, img.naturalHeight, [0, 0, 0]),
          view: gl ? count(gl, gl.width, gl.height, [16, 18, 22]) : null,
          status: document.getElementById('status').textContent,
          error: document.getElementById('status').classList.contains('error')};
})()"""


@pytest.fixture(scope="module")
def chromium() -> str:
    from cdp_pipe import find_chromium

    found = find_chromium()
    if found is None:
        pytest.skip("no chromium (apt-get install chromium)")
    return found


def test_the_page_shows_depth_and_3d_in_headless_chromium(server: Server, chromium: str, tmp_path: Path) -> None:
    """Set DEPTHCLI_SERVE_SCREENSHOT=docs/serve_page.png to keep the screenshot."""
    import cv2
    from cdp_pipe import Browser

    photo = tmp_path / "scene.png"
    write_image(photo, h=240, w=320, seed=3)
    browser = Browser(chromium)
    try:
        browser.goto(server.url)
        browser.wait_for("document.getElementById('colormap').options.length > 0", timeout=60)
        browser.set_file("#file", photo)
        browser.wait_for("document.body.dataset.ready", timeout=120)
        seen = browser.evaluate(PIXELS_JS)
        assert not seen["error"], seen
        assert seen["depth"]["w"] == 320 and seen["depth"]["h"] == 240, seen
        assert seen["depth"]["colours"] > 50, seen  # a colormapped depth, not a flat picture
        assert seen["view"] is not None and seen["view"]["colours"] > 50, seen  # the 3D surface drawn
        assert 0.05 < seen["view"]["foreground"] < 0.95, seen
        assert "scene.png: 320x240 ->" in seen["status"], seen
        shot = browser.screenshot()
        (tmp_path / "page.png").write_bytes(shot)
        if os.environ.get("DEPTHCLI_SERVE_SCREENSHOT"):
            Path(os.environ["DEPTHCLI_SERVE_SCREENSHOT"]).write_bytes(shot)
        picture = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.std() > 10
        # the point cloud from the same depth
        browser.evaluate("(() => { const m = document.getElementById('mode'); m.value = 'points';"
                         " m.dispatchEvent(new Event('input')); })()")
        assert browser.evaluate(PIXELS_JS)["view"]["colours"] > 50
        # a video: frames grabbed in the page, each sent to the API
        clip = tmp_path / "clip.webm"
        if not _write_webm(clip):
            pytest.skip("this OpenCV cannot write a WebM test clip")
        generation = int(browser.evaluate("document.body.dataset.ready"))
        browser.set_file("#file", clip)
        browser.wait_for(f"Number(document.body.dataset.ready) > {generation}", timeout=120)
        assert browser.evaluate("!document.getElementById('video-controls').hidden")
        assert int(browser.evaluate("document.getElementById('frame').max")) > 3
        generation = int(browser.evaluate("document.body.dataset.ready"))
        browser.evaluate("(() => { const f = document.getElementById('frame'); f.value = '3';"
                         " f.dispatchEvent(new Event('change')); })()")
        browser.wait_for(f"Number(document.body.dataset.ready) > {generation}", timeout=120)
        seen = browser.evaluate(PIXELS_JS)
        assert not seen["error"] and seen["depth"]["colours"] > 20, seen
        assert "clip_00003.png: 96x64 ->" in seen["status"], seen
    finally:
        browser.close()


def _write_webm(path: Path) -> bool:
    import cv2
    from cli_helpers import video_frame

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"VP80"), 10.0, (96, 64))
    if not writer.isOpened():
        return False
    for i in range(12):
        writer.write(video_frame(i))
    writer.release()
    return path.exists() and path.stat().st_size > 0
