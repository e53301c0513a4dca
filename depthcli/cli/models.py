"""``depthcli models``, ``depthcli download`` and ``depthcli convert``.

Listing reads only the registry and the cache folder (no torch, no network) so it is instant;
torch and huggingface_hub are imported inside the commands that need them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from ..hub import registry
from . import exit_codes
from .errors import CliError, handle_errors


# ----------------------------------------------------------------------------------- models
@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: one JSON list.")
def models_command(as_json: bool) -> None:
    """List the published models, their licences and whether they are cached.

    \b
    Models download on first use into the Hugging Face cache ($HF_HOME/hub, shared with
    transformers); `depthcli download NAME` fetches them ahead of time, e.g. for offline use.
    """
    with handle_errors():
        rows = [_model_row(entry) for entry in registry.MODELS.values()]
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        else:
            click.echo(_table(rows))
            click.echo(f"\n{_default_line()}. Cache: {registry.cache_dir()}")


def _default_line() -> str:
    """What runs when no --model is given, and why: the starred row, or a checkpoint that
    ``$DEPTHCLI_MODEL`` names (no row to star then, so it is named here)."""
    name = registry.default_model_name()
    if not os.environ.get(registry.MODEL_ENV, "").strip():
        return f"* default (set ${registry.MODEL_ENV} to change)"
    if name in registry.MODELS:
        return f"* default, from ${registry.MODEL_ENV}"
    return f"default: {name} (from ${registry.MODEL_ENV}; a checkpoint, not one of the models above)"


def _model_row(entry: registry.ModelEntry) -> dict[str, Any]:
    folder = registry.cached_snapshot(entry.name)
    return {
        "name": entry.name,
        "default": entry.name == registry.default_model_name(),
        "repo_id": entry.repo_id,
        "family": entry.family,
        "model": entry.family_label,
        "version": entry.version,
        "encoder": entry.encoder,
        "output": entry.output,
        "metric": entry.metric,
        "max_depth": entry.max_depth,
        "licence": entry.licence,
        "commercial_use": entry.commercial_use,
        "download_mb": entry.download_mb,
        "cached": folder is not None,
        "cached_path": str(folder) if folder else None,
        "cached_mb": round(registry.size_on_disk(folder, entry.files) / 1e6, 1) if folder else None,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    header = ("NAME", "MODEL", "ENCODER", "OUTPUT", "DOWNLOAD", "LICENCE", "CACHED")
    lines = [header] + [(
        r["name"] + (" *" if r["default"] else ""),
        r["model"],
        r["encoder"],
        r["output"],
        f"~{_mb(r['download_mb'])}",
        r["licence"] + ("" if r["commercial_use"] else " (non-commercial)"),
        f"yes ({_mb(r['cached_mb'])})" if r["cached"] else "no",
    ) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    padded = ("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines)
    return "\n".join(line.rstrip() for line in padded)


def _mb(megabytes: float) -> str:
    return f"{megabytes / 1000:.1f} GB" if megabytes >= 1000 else f"{megabytes:.0f} MB"


# ----------------------------------------------------------------------------------- download
@click.command("download")
@click.argument("names", nargs=-1, required=True, type=click.Choice(list(registry.MODELS)), metavar="NAME...")
@click.option("--no-progress", is_flag=True, help="No progress bar (it only shows on a terminal anyway).")
def download_command(names: tuple[str, ...], no_progress: bool) -> None:
    """Fetch models into the Hugging Face cache and print where each one is.

    Later runs (also with HF_HUB_OFFLINE=1) use the cached copy without touching the network.
    HF_ENDPOINT, HF_HOME and HF_TOKEN are honoured.
    """
    with handle_errors():
        from ..hub.download import fetch_model

        for name in dict.fromkeys(names):  # once each, in the order given
            registry.print_licence_notice(name)
            if registry.cached_snapshot(name) is None:
                entry = registry.MODELS[name]
                size = _mb(entry.download_mb)
                click.echo(f"depthcli: {name}: downloading {entry.repo_id} (~{size})", err=True)
            else:
                click.echo(f"depthcli: {name}: already cached", err=True)
            click.echo(str(fetch_model(name, progress=not no_progress)))


# ----------------------------------------------------------------------------------- convert
@click.command("convert")
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST.safetensors", type=click.Path(dir_okay=False))
@click.option("--model-version", type=click.Choice(["1", "2"]), default=None,
              help="Depth-Anything version when SRC does not tell (V1 and V2 share tensor shapes).")
@click.option("--max-depth", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Metres, to mark SRC as a metric model when it does not say so itself.")
@click.option("--force", is_flag=True, help="Overwrite DST if it exists.")
def convert_command(src: str, dst: str, model_version: str | None, max_depth: float | None,
                    force: bool) -> None:
    """Convert any supported checkpoint to depthcli's self-describing safetensors.

    SRC is an original .pth, a transformers folder, a depthcli .safetensors or a registry name.
    The output is written to a temporary file beside DST and renamed into place, so DST is
    never left half-written.
    """
    with handle_errors():
        out = Path(dst).expanduser()
        _check_destination(out, force)
        checkpoint = _read_source(src, int(model_version) if model_version else None, max_depth)
        from ..model import build_model
        from ..runtime.loading import named_as_given

        with named_as_given(Path(checkpoint.source), src):
            model = build_model(checkpoint)
        _check_destination(out, force)  # again: it may have appeared while the source loaded
        identity = registry.MODELS.get(src) or registry.identify(src)
        _write_atomically(model, out, {registry.IDENTITY_KEY: identity.name} if identity else None)
        click.echo(f"depthcli: wrote {out}: {model.config.describe}, "
                   f"from a checkpoint in the {checkpoint.layout} layout", err=True)
        click.echo(str(out))


def _check_destination(out: Path, force: bool) -> None:
    if out.suffix != ".safetensors":
        raise CliError(f"{out}: the output must be a .safetensors file", exit_codes.USAGE)
    if not out.parent.is_dir():
        raise CliError(f"{out.parent}: no such folder", exit_codes.USAGE)
    if out.exists() and not force:
        raise CliError(f"{out} exists; pass --force to overwrite it", exit_codes.USAGE)


def _read_source(src: str, version: int | None, max_depth: float | None):  # noqa: ANN202 - Checkpoint
    """Read SRC; a registry name also supplies its version and metric range (and is fetched).
    Errors name SRC as typed."""
    from ..runtime.loading import read_checkpoint_as_given

    registry.print_licence_notice(src)  # a registry name, or a path whose identity is known
    if not Path(src).expanduser().exists() and src in registry.MODELS:
        entry = registry.MODELS[src]
        version = version or entry.version
        max_depth = max_depth or entry.max_depth
    return read_checkpoint_as_given(src, version=version, max_depth=max_depth)


def _write_atomically(model, out: Path, metadata: dict[str, str] | None) -> None:  # noqa: ANN001 - torch module
    """Write beside ``out`` and rename over it: readers see the old file or the new, never half;
    with the permissions of every other output (safetensors alone would make it 0600) and
    synced to disk (a converted model is kept for good). ``metadata``: recorded too (the
    published model it is, so its licence note follows it)."""
    from ..io.writers import OutputError, write_with
    from ..model import save_safetensors

    def save(tmp: Path) -> None:
        save_safetensors(model, tmp, metadata=metadata)
        with open(tmp, "r+b") as f:
            os.fsync(f.fileno())

    try:
        write_with(out, save)
    except OutputError as e:
        raise CliError(str(e), exit_codes.SOME_FAILED) from None
