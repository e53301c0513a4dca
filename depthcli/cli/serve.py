"""``depthcli serve``: load the model once and answer HTTP requests (docs/server.md)."""
from __future__ import annotations

import click

from . import exit_codes, signals
from .errors import CliError
from .options import load_predictor, model_options, with_handled_errors

TOKEN_ENV = "DEPTHCLI_TOKEN"
INSTALL_HINT = "pip install 'depthcli[serve]'"


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback is reachable from the network and "
                   "needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="TCP port (0: any free port; the URL is printed).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default web browser.")
@click.option("--token", envvar=TOKEN_ENV, metavar="SECRET",
              help=f"Require 'Authorization: Bearer SECRET' on every /v1 request (also ${TOKEN_ENV}, "
                   f"which keeps it out of the process list). Required off loopback.")
@click.option("--queue", "queue_size", type=click.IntRange(min=0), default=8, show_default=True,
              help="Requests held besides the one at the model (uploading, decoding, waiting); "
                   "more get 503 with Retry-After.")
@click.option("--max-upload", "max_upload_mb", type=click.FloatRange(min=0, min_open=True), default=50,
              show_default=True, metavar="MB", help="Largest accepted upload, in MiB (413 above).")
@click.option("--max-pixels", type=click.IntRange(min=0), default=None,
              help="Refuse images with more pixels than this (decompression bombs); 0 disables. "
                   "Default: 178956970.")
@model_options
@click.option("-q", "--quiet", is_flag=True, help="No line per request (errors at start-up still show).")
@with_handled_errors
def serve_command(host, port, open_browser, token, queue_size, max_upload_mb, max_pixels, spec,
                  quiet) -> None:  # noqa: ANN001
    """Keep one model loaded and serve depth maps over HTTP, with a browser page.

    \b
    API (docs/server.md):  POST /v1/depth?format=color|gray|gray16|npy   body: the image
                           GET /v1/info, GET /healthz;  GET / is the page (3D viewer)
    \b
    Examples:
      depthcli serve                                   # http://127.0.0.1:8765/
      depthcli serve --model v2-base --port 9000 --open
      curl --data-binary @a.jpg 'http://127.0.0.1:8765/v1/depth?format=npy' -o a.npy
      DEPTHCLI_TOKEN=s3cret depthcli serve --host 0.0.0.0

    Ctrl-C or SIGTERM: no new connections, requests already admitted finish, exit 0; a second
    signal cuts them off (exit 130).
    """
    _require_extra()
    from ..serve.server import bind, is_loopback, url_of

    loopback = is_loopback(host)
    if not loopback and not token:
        raise click.UsageError(f"--host {host} makes the server reachable from the network: "
                               f"set --token (or ${TOKEN_ENV}) too")
    if token is not None and (not token.strip() or not token.isprintable() or not token.isascii()):
        raise click.BadParameter("must be printable ASCII, not empty", param_hint="--token")
    try:
        sock = bind(host, port)  # before the model: a busy port fails fast
    except OSError as e:
        raise CliError(f"cannot listen on {host}:{port}: {e.strerror or e} "
                       f"(choose another --port, or 0 for any free one)", exit_codes.USAGE) from None
    try:
        _serve(sock, loopback=loopback, host=host, token=token, queue_size=queue_size,
               max_upload=int(max_upload_mb * 1024 * 1024), max_pixels=max_pixels, spec=spec,
               quiet=quiet, open_browser=open_browser, url=url_of(sock))
    finally:
        sock.close()


def _serve(sock, *, loopback, host, token, queue_size, max_upload, max_pixels, spec, quiet,  # noqa: ANN001
           open_browser, url) -> None:
    from ..io.images import DEFAULT_MAX_PIXELS
    from ..jobs.metadata import model_facts
    from ..serve.app import LOOPBACK_HOSTS, ServeSettings, create_app
    from ..serve.server import run

    predictor = load_predictor(spec)  # says the backend's notes itself
    if predictor.traits.temporal:
        raise click.UsageError(f"{predictor.config.describe} is a video model: the server answers one image "
                               f"at a time; serve an image model (e.g. v2-small or da3-small)")
    settings = ServeSettings(
        model=spec.source, token=token, allowed_hosts=LOOPBACK_HOSTS if loopback else None,
        queue=queue_size, max_upload_bytes=max_upload,
        max_pixels=None if max_pixels == 0 else (max_pixels or DEFAULT_MAX_PIXELS),
        size=predictor.size, max_side=spec.max_side, log=None if quiet else _echo, facts=model_facts(predictor, spec))
    app = create_app(predictor, settings)
    if not loopback:
        _echo(f"depthcli: warning: listening on {host}: reachable from the network; every /v1 request "
              f"needs the token, and the traffic is plain HTTP (put TLS in front for untrusted networks)")
    precision = str(predictor.dtype).removeprefix("torch.")
    backend = getattr(predictor, "backend_name", "torch")

    def ready() -> None:  # from here a signal stops the server gracefully (serve.server.run)
        _echo(f"depthcli: serving {spec.source} ({backend} {predictor.device} {precision}, --size {predictor.size}) "
              f"at {url} (API: {url}v1/depth; Ctrl-C stops)")
        if open_browser:
            import urllib.parse
            import webbrowser

            # the socket already listens: the browser's request waits in its backlog. A token rides in
            # the fragment, which the browser keeps to itself (the page stores it, then drops it)
            webbrowser.open(url + (f"#token={urllib.parse.quote(token)}" if token else ""))

    def stopping(message: str) -> None:
        signals.work_done()  # the server stops by its own rule now (a second signal cuts it off, exit 130)
        _echo(f"depthcli: {message}")

    graceful = run(app, sock, on_stop=stopping, on_ready=ready)
    signals.work_done()
    if not graceful:
        raise CliError("stopped by a second signal; requests still running were cut off", exit_codes.INTERRUPTED)
    _echo("depthcli: stopped; every admitted request was answered")


def _echo(text: str) -> None:
    click.echo(text, err=True)


def _require_extra() -> None:
    """The server's dependencies are an optional extra: without them, one line saying how to get them
    (imported here, not only looked up, so a broken install is caught too; `--help` never gets here)."""
    import importlib

    missing = []
    for module, name in (("starlette", "starlette"), ("uvicorn", "uvicorn"), ("python_multipart", "python-multipart")):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(name)
    if missing:
        raise CliError(f"depthcli serve needs {', '.join(missing)}: {INSTALL_HINT}", exit_codes.USAGE)
