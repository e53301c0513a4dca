"""Running ``depthcli serve`` in tests and talking to it: a real server process on 127.0.0.1 (a free
port chosen by the OS, ``--port 0``) and plain HTTP from the standard library. Shared by
tests/test_serve.py and the model families' end-to-end tests.
"""
from __future__ import annotations

import http.client
import io
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cli_helpers import SIZE_ARG, popen_cli, stop_process

MODEL_OPTS = (*SIZE_ARG, "--backend", "torch")  # the tiny model's defaults
START_TIMEOUT = 180  # a busy CI machine imports torch slowly
SERVING = re.compile(r"serving .* at (http://[^ ]+/) ")


# ----------------------------------------------------------------------------------- servers
@dataclass
class Server:
    proc: object
    url: str
    host: str
    port: int
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def start_server(tmp: Path, model: str, *args: str, env: dict[str, str] | None = None,
                 model_opts: tuple[str, ...] = MODEL_OPTS) -> Server:
    """``depthcli serve --model MODEL MODEL_OPTS --port 0 ARGS`` on 127.0.0.1 (the default host), a
    free port chosen by the OS; returns once it says where it serves. Stop it with
    ``stop_process(server.proc)`` (or use ``running``)."""
    log = tmp / f"serve-{time.monotonic_ns()}.log"
    proc = popen_cli("serve", "--model", model, *model_opts, "--port", "0", *args, stderr_path=log, env=env)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        text = log.read_text(errors="replace") if log.exists() else ""
        found = SERVING.search(text)
        if found:
            parts = urllib.parse.urlsplit(found.group(1))
            return Server(proc, found.group(1), parts.hostname, parts.port, log)
        if proc.poll() is not None:
            raise AssertionError(f"depthcli serve exited {proc.returncode}:\n{text}")
        if time.monotonic() > deadline:
            stop_process(proc)
            raise AssertionError(f"depthcli serve did not start in {START_TIMEOUT} s:\n{text}")
        time.sleep(0.1)


@contextmanager
def running(tmp: Path, model: str, *args: str, env: dict[str, str] | None = None,
            model_opts: tuple[str, ...] = MODEL_OPTS) -> Iterator[Server]:
    """A started server for the ``with`` block, stopped after it (no traceback allowed in its log)."""
    server = start_server(tmp, model, *args, env=env, model_opts=model_opts)
    try:
        yield server
    finally:
        stop_process(server.proc)
        assert "Traceback" not in server.stderr(), server.stderr()


# ----------------------------------------------------------------------------------- HTTP
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def request(server: Server, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 120) -> Reply:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def post_image(server: Server, data: bytes, query: str = "format=npy", **headers: str) -> Reply:
    return request(server, "POST", f"/v1/depth?{query}", data,
                   {"Content-Type": "application/octet-stream", **headers})


def npy_of(body: bytes) -> np.ndarray:
    return np.load(io.BytesIO(body), allow_pickle=False)
