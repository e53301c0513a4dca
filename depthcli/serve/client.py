"""``depthcli image ... --server URL``: the batch goes to a running ``depthcli serve`` instead of a
model loaded here, so a shell loop pays no start-up. Standard library only (urllib): no extra
dependency and no torch import on this side.

Each input's bytes are sent as they are (the server decodes them exactly as the local command
would), the response body is the output file, written atomically by ``jobs.image.write``, and
the per-image line is built from the server's ``X-Depthcli-Stats`` header.
"""
from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from ..io.inputs import InputItem
from ..jobs import image as image_job

BUSY_RETRIES = 30  # 503 (the server's queue is full): wait Retry-After and try again, this often
MAX_RETRY_WAIT_S = 30.0
TIMEOUT_S = 600.0  # one request: upload + queue + inference + download


class ServerUnavailable(Exception):
    """The server cannot be used at all (unreachable, not a depthcli server, token refused);
    the message is one line. ``usage`` marks the user's mistake (bad URL, wrong token)."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


class DepthClient:
    def __init__(self, url: str, token: str | None = None, *, timeout: float = TIMEOUT_S) -> None:
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ServerUnavailable(f"--server {url}: not an http(s) URL", usage=True)
        self.base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/"
        self.token = token
        self.timeout = timeout
        self.info: dict = {}

    def connect(self) -> dict:
        """GET /v1/info: the server's model and limits (and a check that it answers)."""
        status, _, body = self._request("GET", "v1/info")
        if status == 401:
            raise ServerUnavailable(f"{self.base}: the server asks for a token (--token or $DEPTHCLI_TOKEN)"
                                    if not self.token else f"{self.base}: the server refused the token", usage=True)
        try:
            info = json.loads(body)
            if status != 200 or not isinstance(info, dict) or info.get("api") != 1:
                raise ValueError
        except ValueError:
            raise ServerUnavailable(f"{self.base}: not a depthcli server (GET v1/info gave HTTP {status})") from None
        self.info = info
        return info

    def depth(self, data: bytes, name: str, opts: image_job.ImageOptions) -> tuple[bytes, dict[str, str]]:
        """The output file for one image, and the response headers. Raises ``ImageJobError`` for a
        failure of this image alone (the server's one-line reason), ``ServerUnavailable`` when the
        server stopped answering."""
        query = urllib.parse.urlencode(query_of(opts))
        headers = {"Content-Type": "application/octet-stream", "X-Depthcli-Name": urllib.parse.quote(name)}
        for attempt in range(BUSY_RETRIES + 1):
            status, response_headers, body = self._request("POST", f"v1/depth?{query}", data, headers)
            if status == 200:
                return body, response_headers
            if status == 503 and "retry-after" in response_headers and attempt < BUSY_RETRIES:
                time.sleep(_retry_after(response_headers["retry-after"]))
                continue
            raise image_job.ImageJobError(f"server: {_error_of(status, body)}")
        raise AssertionError("unreachable")

    def _request(self, method: str, path: str, data: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=dict(headers or {}))
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) only
                return response.status, _lower(response.headers.items()), response.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, _lower(e.headers.items()), e.read()
        except urllib.error.URLError as e:
            raise ServerUnavailable(f"cannot reach {self.base}: {_reason(e.reason)}") from None
        except (OSError, http.client.HTTPException) as e:  # reset, timed out, cut short
            raise ServerUnavailable(f"lost the connection to {self.base}: {_reason(e)}") from None


def query_of(opts: image_job.ImageOptions) -> dict[str, str]:
    """``ImageOptions`` as the query of POST /v1/depth (only what differs from the defaults)."""
    query = {"format": opts.fmt, "colormap": opts.colormap}  # the colormap is in every PNG's metadata
    if opts.invert:
        query["invert"] = "true"
    if opts.side_by_side:
        query["side_by_side"] = "true"
    for key, field in (("focal", "focal_px"), ("fov", "fov_deg"), ("depth_scale", "depth_scale")):
        value = getattr(opts, field, None)
        if value is not None:
            query[key] = repr(float(value))
    if getattr(opts, "depth_shift", 0.0):
        query["depth_shift"] = repr(float(opts.depth_shift))
    return query


def run_images_remote(jobs: Iterable[tuple[InputItem, Path | None]], client: DepthClient,
                      opts: image_job.ImageOptions, *, on_done: Callable[..., None],
                      on_failed: Callable[[str, str], None]) -> None:
    """``jobs.image.run_images`` with the server as the model: the same outputs, written the same
    way, ``on_done(stats, dest)`` / ``on_failed(label, reason)`` as there. Raises
    ``ServerUnavailable`` when the server stops answering (the outputs written so far are kept)."""
    from ..runtime.stats import FrameStats

    limit = client.info.get("limits", {}).get("max_upload_bytes")
    for item, dest in jobs:
        try:
            data = _input_bytes(item, limit)
            name = item.relative.as_posix() if item.source is not None else "-"  # as run_images records it
            body, headers = client.depth(data, name, opts)
            image_job.write(body, dest)
            if getattr(opts, "sidecar", False) and dest is not None and "x-depthcli-metadata" in headers:
                image_job.write_sidecar(json.loads(headers["x-depthcli-metadata"]), dest)
        except image_job.ImageJobError as e:
            on_failed(item.label, str(e))
            continue
        on_done(_stats(FrameStats, headers, item.label), dest)


def _input_bytes(item: InputItem, limit: int | None) -> bytes:
    if item.source is None:
        data = item.data or b""
    else:
        try:
            size = item.source.stat().st_size
            if limit is not None and size > limit:
                raise image_job.ImageJobError(f"{size} bytes, over the server's {limit}-byte upload limit")
            data = item.source.read_bytes()
        except FileNotFoundError:
            raise image_job.ImageJobError("no such file") from None
        except IsADirectoryError:
            raise image_job.ImageJobError("is a directory, not an image") from None
        except PermissionError:
            raise image_job.ImageJobError("permission denied") from None
        except OSError as e:
            raise image_job.ImageJobError(f"cannot read file: {e.strerror or e}") from None
    if not data:
        raise image_job.ImageJobError("empty file" if item.source is not None else "empty input")
    return data


def _stats(frame_stats, headers: dict[str, str], label: str):  # noqa: ANN001, ANN202 - FrameStats
    """The server's FrameStats for this image, under the local label."""
    import dataclasses

    raw = json.loads(headers.get("x-depthcli-stats", "{}"))
    known = {f.name for f in dataclasses.fields(frame_stats)}
    values = {k: v for k, v in raw.items() if k in known}
    values.update(name=label, input_hw=tuple(values.get("input_hw", (0, 0))),
                  processed_hw=tuple(values.get("processed_hw", (0, 0))))
    for key, default in (("infer_ms", 0.0), ("total_ms", 0.0), ("peak_mem_mb", 0.0), ("mem_kind", "rss"),
                         ("device", "?"), ("dtype", "?")):
        values.setdefault(key, default)
    return frame_stats(**values)


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in items}


def _retry_after(value: str) -> float:
    try:
        return min(MAX_RETRY_WAIT_S, max(0.05, float(value)))
    except ValueError:
        return 1.0


def _error_of(status: int, body: bytes) -> str:
    try:
        message = json.loads(body).get("error")
    except (ValueError, AttributeError):
        message = None
    return f"HTTP {status}: {message}" if message else f"HTTP {status}"


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__
