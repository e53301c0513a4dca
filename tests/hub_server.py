"""A tiny stand-in for the Hugging Face Hub on 127.0.0.1, for download tests without network.

It implements only what ``huggingface_hub.hf_hub_download`` (2.x) calls:
``HEAD`` and ``GET /{repo_id}/resolve/{revision}/{filename}``, answering with the headers the
client reads (``X-Repo-Commit``, ``ETag``, ``Content-Length``; ``Range`` resumes get 206) and
the hub's error headers (``X-Error-Code: RepoNotFound`` / ``EntryNotFound``). Anything else is
a plain 404, and every request is logged so tests can assert that a run made none.

Modes (``HubServer.mode``):
- ``normal``: serve the repos;
- ``404``: every repo is missing, as the hub answers for a wrong or private repo id;
- ``drop``: the first GET of ``model.safetensors`` sends half the body and closes the
  connection, and every later request for that file is cut before any response, as when the
  network goes away mid-download (huggingface_hub retries a few times, then gives up).
"""
from __future__ import annotations

import hashlib
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the one revision every repo has
DROPPED_FILE = "model.safetensors"
_RESOLVE = re.compile(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None


def _etag(filename: str, data: bytes) -> str:
    """What the hub uses: sha256 for LFS files (weights), the git blob sha1 for small ones."""
    if filename.endswith(".safetensors"):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 - git's hash


class HubServer:
    """Serves folders as hub repos: ``HubServer({"org/name": folder})``; use as a context manager."""

    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = {repo: {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}
                      for repo, folder in repos.items()}
        self.mode = "normal"
        self.dropped = False
        self._log: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._log)

    def reset(self, mode: str = "normal") -> None:
        """Switch mode and forget the request log (call at the start of each test)."""
        assert mode in ("normal", "404", "drop"), mode
        with self._lock:
            self.mode = mode
            self.dropped = False
            self._log.clear()

    def record(self, request: Request) -> None:
        with self._lock:
            self._log.append(request)

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and Content-Length, like the real hub
    server: ThreadingHTTPServer

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass  # keep pytest output clean; the request log is in HubServer.requests

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    # ------------------------------------------------------------------------------- serving
    def _serve(self, body: bool) -> None:
        self.hub.record(Request(self.command, self.path, self.headers.get("Range")))
        m = _RESOLVE.fullmatch(unquote(self.path.split("?", 1)[0]))
        if m is None:
            return self._reply(404, {}, b"Not Found")
        repo, revision, filename = m["repo"], m["revision"], m["filename"]
        files = self.hub.repos.get(repo)
        if files is None or self.hub.mode == "404":
            return self._hub_error("RepoNotFound", "Repository not found")
        if revision not in ("main", COMMIT):
            return self._hub_error("RevisionNotFound", "Invalid rev id")
        if filename not in files:
            return self._hub_error("EntryNotFound", "Entry not found", {"X-Repo-Commit": COMMIT})
        data = files[filename]
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{_etag(filename, data)}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if body and self.hub.mode == "drop" and filename == DROPPED_FILE:
            return self._drop(headers, data)
        start = _range_start(self.headers.get("Range"))
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            return self._reply(206, headers, data[start:], body=body)
        self._reply(200, headers, data, body=body)

    def _hub_error(self, code: str, message: str, extra: dict[str, str] | None = None) -> None:
        """A 404 the way the hub sends it: huggingface_hub picks its exception from X-Error-Code."""
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        self._reply(404, {**headers, **(extra or {})}, b'{"error":"%s"}' % message.encode())

    def _reply(self, status: int, headers: dict[str, str], data: bytes, *, body: bool = True) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(data)

    def _drop(self, headers: dict[str, str], data: bytes) -> None:
        """Half the body, then a dead connection; afterwards no response at all."""
        self.close_connection = True
        if not self.hub.dropped:
            self.hub.dropped = True
            self.send_response(200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)


def _range_start(header: str | None) -> int:
    m = re.fullmatch(r"bytes=(\d+)-", header or "")
    return int(m.group(1)) if m else 0
