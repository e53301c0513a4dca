"""The HTTP door: a Starlette app over one resident predictor.

``POST /v1/depth`` runs the very job functions ``depthcli image`` runs (``jobs.image``: decode,
prepare, infer, render, encode), so a response body is byte for byte the file the CLI would
write. Decoding, preparing, rendering and encoding run in the thread pool; inference runs in the
one model thread (``worker.ModelWorker``); the event loop only moves bytes. Every failure is a
JSON body ``{"error": "<one line>"}`` with a status code (docs/server.md lists them).

No route takes a path or a file name from the client: the only files ever read are the
package's own static files (``static/``).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._version import __version__
from ..io.inputs import InputItem
from ..jobs import image as image_job
from .worker import Admission, ClientGone, Counters, ModelWorker

API_VERSION = 1
STATIC_DIR = Path(__file__).parent / "static"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
MEDIA_TYPES = {"png": "image/png", "npy": "application/octet-stream", "exr": "image/x-exr",
               "ply": "application/octet-stream", "json": "application/json"}
TRUE_WORDS, FALSE_WORDS = frozenset({"", "1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})
QUERY_KEYS = ("format", "colormap", "invert", "side_by_side", "focal", "fov", "depth_scale", "depth_shift")


@dataclass
class ServeSettings:
    """Everything the app needs besides the predictor (filled by ``depthcli serve``)."""

    model: str  # what was loaded, for /v1/info
    token: str | None = None  # None: no Authorization asked
    allowed_hosts: frozenset[str] | None = LOOPBACK_HOSTS  # Host header check; None: any host
    queue: int = 8  # requests held besides the one at the model
    max_upload_bytes: int = 50 * 1024 * 1024
    max_pixels: int | None = image_job.DEFAULT_MAX_PIXELS
    upload_timeout_s: float = 60.0  # a body that takes longer is cut off (408): slots are few
    retry_after_s: int = 1
    size: int = 518
    max_side: int | None = None
    log: Callable[[str], None] | None = None  # one line per request; None: silent
    facts: dict | None = None  # jobs.metadata.model_facts: the model part of every output's metadata
    counters: Counters = field(default_factory=Counters)


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


# ------------------------------------------------------------------------------- the app
def create_app(predictor, settings: ServeSettings) -> Starlette:  # noqa: ANN001 - DepthPredictor
    counters = settings.counters
    admission = Admission(settings.queue + 1, counters)
    worker: ModelWorker | None = None
    index_html, index_csp = _index_page()

    def get_worker() -> ModelWorker:
        nonlocal worker
        if worker is None:  # started lazily, in the serving process (not at import or in tests' set-up)
            worker = ModelWorker(counters)
        return worker

    async def index(request: Request) -> Response:
        return Response(index_html, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": index_csp, "Cache-Control": "no-cache"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def info(request: Request) -> Response:
        return JSONResponse(_info(predictor, settings))

    async def depth(request: Request) -> Response:
        t0 = time.perf_counter()
        try:
            opts = parse_options(request.query_params.multi_items(), settings.max_pixels, predictor.traits)
        except ApiError as e:
            return error_response(e.status, str(e), e.headers)
        if not admission.try_enter():
            return error_response(503, f"busy: {settings.queue + 1} requests already held; retry shortly",
                                  {"Retry-After": str(settings.retry_after_s)})
        label = "upload"
        try:
            body, name = await read_upload(request, settings)
            label = _label(name)
            response = await _compute(request, body, name, label, opts, t0)
        except ApiError as e:
            response = error_response(e.status, str(e), e.headers)
        except (ClientDisconnect, ClientGone):
            counters.client_gone += 1
            response = Response(status_code=499)  # nobody reads it; uvicorn drops it
        except Exception as e:  # noqa: BLE001 - one request must never take the server down
            response = error_response(500, f"internal error: {type(e).__name__}: {_first_line(e)}")
        finally:
            admission.leave()
        if response.status_code == 200:
            counters.served += 1
        _log(settings, request, response, label, t0)
        return response

    async def _compute(request: Request, body: bytes, name: str | None, label: str,
                       opts: image_job.ImageOptions, t0: float) -> Response:
        item = InputItem(source=None, label=label, relative=Path(label), data=body)

        def load():  # noqa: ANN202 - thread pool: decode + network input
            image_bgr = image_job.decode(item, opts)
            focal_px = image_job.focal_for(predictor, item, image_bgr.shape[:2], opts)
            return image_bgr, image_job.prepare(predictor, image_bgr, label, focal_px)

        try:
            image_bgr, prepared = await run_in_threadpool(load)
        except image_job.ImageJobError as e:
            reason = str(e)
            raise ApiError(413 if reason.startswith("cannot prepare") else 415, reason) from None

        client_gone = asyncio.Event()
        watcher = asyncio.ensure_future(_watch_disconnect(request, client_gone))
        t_queue = time.perf_counter()
        started: list[float] = []

        def run_model():  # noqa: ANN202 - the model thread
            started.append(time.perf_counter())
            return image_job.infer(predictor, prepared)

        try:
            prediction = await get_worker().run(run_model, client_gone=client_gone)
        except image_job.ImageJobError as e:
            raise ApiError(503, str(e), {"Retry-After": str(settings.retry_after_s)}) from None
        finally:
            watcher.cancel()
        queue_ms = ((started[0] if started else time.perf_counter()) - t_queue) * 1000

        def finish() -> tuple[bytes, dict]:  # thread pool: the output file's bytes
            return image_job.finish(item, image_bgr, prediction, opts, settings.facts, name=name or "-")

        try:
            data, meta = await run_in_threadpool(finish)
        except image_job.ImageJobError as e:
            raise ApiError(500, str(e)) from None
        stats = prediction.stats
        request.state.stats_line = stats.line()
        suffix = image_job.FORMATS[opts.fmt]
        headers = {
            "Content-Disposition": content_disposition(_output_name(label, suffix)),
            "X-Depthcli-Infer-Ms": f"{stats.infer_ms:.3f}",
            "X-Depthcli-Total-Ms": f"{stats.total_ms:.3f}",
            "X-Depthcli-Queue-Ms": f"{queue_ms:.3f}",
            "X-Depthcli-Request-Ms": f"{(time.perf_counter() - t0) * 1000:.3f}",
            "X-Depthcli-Input-HW": "{},{}".format(*stats.input_hw),
            "X-Depthcli-Network-HW": "{},{}".format(*stats.processed_hw),
            "X-Depthcli-Stats": json.dumps(json.loads(stats.to_json()), ensure_ascii=True, separators=(",", ":")),
            "X-Depthcli-Unit": _unit(predictor.config),
        }
        try:
            headers["X-Depthcli-Metadata"] = _ascii_json(meta)
        except ValueError:  # not representable as strict JSON (a NaN): the header is a courtesy
            pass
        return Response(data, media_type=MEDIA_TYPES.get(suffix, "application/octet-stream"), headers=headers)

    async def on_http_error(request: Request, exc: HTTPException) -> Response:
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    async def shutdown() -> None:
        if worker is not None:
            await run_in_threadpool(worker.close)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/info", info, methods=["GET"]),
        Route("/v1/depth", depth, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: on_http_error}, lifespan=_lifespan(shutdown))
    app.add_middleware(Guard, token=settings.token, allowed_hosts=settings.allowed_hosts)
    return app


def _lifespan(shutdown: Callable[[], Any]) -> Callable[[Any], Any]:
    import contextlib

    @contextlib.asynccontextmanager
    async def lifespan(app):  # noqa: ANN001, ANN202
        yield
        await shutdown()

    return lifespan


# ------------------------------------------------------------------------------- security
class Guard:
    """Pure ASGI middleware in front of everything (the body is never touched here):

    - ``Host`` must be a loopback name when the server listens on loopback (a page on another
      site cannot reach it through DNS rebinding);
    - a browser request from another origin is refused (a page elsewhere cannot make this
      server compute, even blindly);
    - with a token, ``/v1/...`` needs ``Authorization: Bearer <token>`` (constant-time compare).
      The page (``/``, ``/static/...``) and ``/healthz`` hold nothing secret and are served
      without it: a browser cannot attach a header to a navigation; the page asks for the token.
    """

    def __init__(self, app, token: str | None, allowed_hosts: frozenset[str] | None) -> None:  # noqa: ANN001
        self.app = app
        self.token = token.encode() if token else None
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        problem = self._check(scope, headers)
        if problem is not None:
            await problem(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check(self, scope, headers: dict[str, str]) -> Response | None:  # noqa: ANN001
        host = _host_name(headers.get("host", ""))
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            return error_response(421, f"unexpected Host {host!r}: this server answers to "
                                       f"{', '.join(sorted(self.allowed_hosts))} only")
        origin = headers.get("origin")
        if origin is not None and _host_port(origin) != headers.get("host", "").lower():  # "null" too
            return error_response(403, "cross-origin request refused")
        if self.token is not None and scope["path"].startswith("/v1/"):
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token):
                return error_response(401, "missing or wrong token (Authorization: Bearer <token>)",
                                      {"WWW-Authenticate": 'Bearer realm="depthcli"'})
        return None


def _host_name(host_header: str) -> str:
    """``[::1]:8765`` -> ``::1``, ``Localhost:80`` -> ``localhost``."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def _host_port(origin: str) -> str:
    """``http://127.0.0.1:8765`` -> ``127.0.0.1:8765`` (the form a Host header has)."""
    return origin.split("://", 1)[-1].rstrip("/").lower()


# ------------------------------------------------------------------------------- requests
def parse_options(items: list[tuple[str, str]], max_pixels: int | None,
                  traits: Any) -> image_job.ImageOptions:  # traits: model.configs.Traits
    """The query string as ``ImageOptions`` (the names of ``depthcli image``'s options); a bad or
    unknown parameter, or a combination this model cannot give, is a 400."""
    from ..io.render import COLORMAPS

    values: dict[str, str] = {}
    for key, value in items:
        if key not in QUERY_KEYS:
            raise ApiError(400, f"unknown parameter {key!r} (known: {', '.join(QUERY_KEYS)})")
        if key in values:
            raise ApiError(400, f"parameter {key!r} given twice")
        values[key] = value
    fmt = values.get("format", "color")
    if fmt not in image_job.FORMATS:
        raise ApiError(400, f"format {fmt!r}: choose from {', '.join(image_job.FORMATS)}")
    colormap = values.get("colormap", "inferno")
    if colormap not in COLORMAPS:
        raise ApiError(400, f"colormap {colormap!r}: choose from {', '.join(sorted(COLORMAPS))}")
    flags = {}
    for key in ("invert", "side_by_side"):
        word = values.get(key, "false").strip().lower()
        if word not in TRUE_WORDS | FALSE_WORDS:
            raise ApiError(400, f"{key}={values[key]!r}: use true or false")
        flags[key] = word in TRUE_WORDS
    if flags["side_by_side"] and fmt not in ("color", "gray"):
        raise ApiError(400, "side_by_side needs format color or gray")
    numbers: dict[str, float] = {}
    for key, low in (("focal", 0.0), ("fov", 0.0), ("depth_scale", None), ("depth_shift", None)):
        if key in values:
            try:
                number = float(values[key])
            except ValueError:
                number = float("nan")
            if not math.isfinite(number) or (low is not None and number <= low) or (key == "fov" and number >= 180):
                raise ApiError(400, f"{key}={values[key]!r}: not a valid number here")
            numbers[key] = number
    extra = {}
    if "focal" in numbers or "fov" in numbers or "depth_scale" in numbers:  # fields of the ply options
        extra = {"focal_px": numbers.get("focal"), "fov_deg": numbers.get("fov"),
                 "depth_scale": numbers.get("depth_scale"), "depth_shift": numbers.get("depth_shift", 0.0)}
    elif "depth_shift" in numbers:
        extra = {"depth_shift": numbers["depth_shift"]}
    opts = image_job.ImageOptions(fmt=fmt, colormap=colormap, invert=flags["invert"],
                                  side_by_side=flags["side_by_side"], max_pixels=max_pixels, **extra)
    try:
        image_job.check_options(opts, traits)
    except image_job.ImageUsageError as e:
        raise ApiError(400, str(e).replace("--", "")) from None  # the CLI's words, as query names
    return opts


class _TooLarge(Exception):
    pass


async def read_upload(request: Request, settings: ServeSettings) -> tuple[bytes, str | None]:
    """(image bytes, the client's name for it) from the raw body or a multipart field ``image``. The size limit
    holds while the body streams in (an over-long upload is cut off at the limit, whatever its
    Content-Length says), and so does the upload time limit."""
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"upload of {int(declared)} bytes is over the {limit}-byte limit")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    received = 0
    upstream = request.receive

    async def limited_receive():  # noqa: ANN202
        nonlocal received
        message = await upstream()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _TooLarge
        return message

    try:
        with anyio.fail_after(settings.upload_timeout_s):
            if ctype == "multipart/form-data":
                return await _read_form(Request(request.scope, limited_receive))
            chunks = []
            async for chunk in Request(request.scope, limited_receive).stream():
                chunks.append(chunk)
            body = b"".join(chunks)
    except _TooLarge:
        raise ApiError(413, f"upload over the {limit}-byte limit", {"Connection": "close"}) from None
    except TimeoutError:
        raise ApiError(408, f"upload took over {settings.upload_timeout_s:g} s", {"Connection": "close"}) from None
    if not body:
        raise ApiError(400, "empty body: send an image")
    return body, _client_name(request.headers.get("x-depthcli-name"), quoted=True)


async def _read_form(request: Request) -> tuple[bytes, str | None]:
    try:
        form = await request.form(max_files=1, max_fields=8)
    except _TooLarge:
        raise
    except HTTPException as e:  # the multipart parser's own complaints
        raise ApiError(400, f"bad multipart body: {e.detail}") from None
    except ClientDisconnect:
        raise
    except Exception as e:  # noqa: BLE001 - any parser failure is the client's malformed body
        raise ApiError(400, f"bad multipart body: {_first_line(e)}") from None
    try:
        part = form.get("image")
        if part is None or isinstance(part, str):
            raise ApiError(400, "multipart body without a file field named 'image'")
        data = await part.read()
        if not data:
            raise ApiError(400, "empty image field")
        return data, _client_name(part.filename)
    finally:
        await form.close()


async def _watch_disconnect(request: Request, gone: asyncio.Event) -> None:
    """The body has been read: the next message the server gives is ``http.disconnect``, which
    comes when the client closes the connection (or after the response, when this is cancelled)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


def _client_name(name: str | None, *, quoted: bool = False) -> str | None:
    """The input's name as the client gives it (the ``X-Depthcli-Name`` header, percent-encoded
    UTF-8, or the multipart file name): recorded in the output's metadata as ``depthcli image``
    records a file's, and never used as a path. None when absent or unusable."""
    if not name:
        return None
    if quoted:
        from urllib.parse import unquote

        try:
            name = unquote(name, errors="strict")
        except UnicodeDecodeError:
            return None
    return name if len(name) <= 255 and name.isprintable() else None


def _label(name: str | None) -> str:
    """A client-given file name, only ever used in messages and the download name: its last
    component (no folder can be named through it), control characters dropped, at most 100
    characters. Any letters are kept: ``café.jpg`` stays ``café.jpg``."""
    if not name:
        return "upload"
    base = PurePosixPath(name.replace("\\", "/")).name
    safe = "".join(ch for ch in base if ch.isprintable())[:100].lstrip(".").strip()
    return safe or "upload"


def _output_name(label: str, suffix: str) -> str:
    stem = label.rsplit(".", 1)[0] if "." in label else label
    return f"{stem}_depth.{suffix}"


def content_disposition(file_name: str) -> str:
    """``inline`` with the download name as given (RFC 6266): ``filename*`` carries it in UTF-8
    (RFC 5987 percent-encoding), ``filename`` an ASCII stand-in for clients that know only that
    (``café_depth.png`` -> ``cafe_depth.png``: accents dropped, anything else non-ASCII as ``_``)."""
    import unicodedata
    from urllib.parse import quote

    ascii_name = unicodedata.normalize("NFKD", file_name).encode("ascii", "ignore").decode("ascii")
    ascii_name = re.sub(r"[^A-Za-z0-9._+-]", "_", ascii_name).lstrip(".") or "depth"
    header = f'inline; filename="{ascii_name}"'
    if ascii_name != file_name:
        header += f"; filename*=UTF-8''{quote(file_name, safe='')}"
    return header


# ------------------------------------------------------------------------------- answers
def _info(predictor, settings: ServeSettings) -> dict[str, Any]:  # noqa: ANN001
    from ..io.render import COLORMAPS

    config = predictor.config
    c = settings.counters
    return {
        "api": API_VERSION,
        "depthcli": __version__,
        "model": settings.model,
        "family": config.family,
        "network": config.describe,
        "model_version": getattr(config, "version", None),
        "encoder": config.encoder.name,
        "metric": config.metric,
        "max_depth": config.max_depth,
        "kind": config.traits.kind,
        "traits": config.traits.to_dict(),
        "unit": _unit(config),
        "backend": getattr(predictor, "backend_name", "torch"),
        "device": str(predictor.device),
        "precision": str(predictor.dtype).removeprefix("torch."),
        "size": settings.size,
        "max_side": settings.max_side,
        "formats": {fmt: suffix for fmt, suffix in image_job.FORMATS.items()},
        "colormaps": sorted(COLORMAPS),
        "limits": {"max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels,
                   "queue": settings.queue, "upload_timeout_s": settings.upload_timeout_s},
        "auth": settings.token is not None,
        "load": {"in_flight": c.in_flight, "waiting": c.waiting, "model_runs": c.model_runs,
                 "served": c.served, "rejected_busy": c.rejected_busy, "client_gone": c.client_gone},
    }


def _unit(config: Any) -> str:
    """``m`` for metres, else what the relative values are (inverse depth, or depth for DA3)."""
    return "m" if config.metric else config.traits.kind


def _ascii_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _log(settings: ServeSettings, request: Request, response: Response, label: str, t0: float) -> None:
    if settings.log is None:
        return
    ms = (time.perf_counter() - t0) * 1000
    detail = ""
    if response.status_code == 200:
        detail = f": {getattr(request.state, 'stats_line', '')}"
    else:
        try:
            detail = ": " + json.loads(bytes(response.body)).get("error", "")
        except (ValueError, AttributeError):
            detail = ""
    settings.log(f"POST /v1/depth {response.status_code} {label} ({ms:.0f} ms){detail}")


def _index_page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy: scripts from this server only, plus the one
    inline import map, allowed by its hash."""
    html = (STATIC_DIR / "index.html").read_bytes()
    hashes = [base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode()
              for m in re.finditer(rb'<script type="importmap">(.*?)</script>', html, re.S)]
    script_src = " ".join(["'self'", *(f"'sha256-{h}'" for h in hashes)])
    csp = (f"default-src 'self'; script-src {script_src}; img-src 'self' blob: data:; media-src 'self' blob:; "
           "style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
    return html, csp


def _print_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
