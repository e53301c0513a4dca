"""``depthcli info``: how an output was made and how to read its values back."""
from __future__ import annotations

import json
import sys

import click

from . import exit_codes
from .options import with_handled_errors

# the fields a reader wants first; the rest follow in the file's order
_FIRST = ("kind", "format", "input", "frame", "model", "sha256", "version", "encoder", "max_depth", "precision",
          "backend", "device", "input_hw", "network_hw", "size", "max_side", "min", "max", "invert", "colormap",
          "levels", "formula", "precision_note", "values")
_LONG_LIST = 8  # longer lists (a video's per-frame ranges) are summarised, --json has them all


@click.command("info")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--json", "as_json", is_flag=True,
              help="Print the metadata as JSON: one object per file, one per line.")
@with_handled_errors
def info_command(files, as_json) -> None:  # noqa: ANN001
    """Show how a depthcli output was made and how to read its values back.

    FILE is a PNG, EXR or PLY written by depthcli, a <stem>_depth.json sidecar, or an .npy /
    video with its sidecar beside it. Exit 1 if any file holds no readable metadata.

    \b
    Examples:
      depthcli info out/photo_depth.png
      depthcli info --json out/*_depth.exr | jq .min
    """
    from ..io.formats.metadata import MetadataError, read_metadata

    failed = 0
    for i, name in enumerate(files):
        try:
            kind, meta = read_metadata(name)
        except MetadataError as e:
            click.echo(f"depthcli: {name}: {e}", err=True)
            failed += 1
            continue
        if as_json:
            click.echo(json.dumps(meta, ensure_ascii=False))
            continue
        if i:
            click.echo()
        click.echo(f"{name} ({kind})")
        for line in _readable(meta):
            click.echo(line)
    if failed:
        sys.exit(exit_codes.SOME_FAILED)


def _readable(meta: dict, indent: str = "  ") -> list[str]:
    keys = [k for k in _FIRST if k in meta] + [k for k in meta if k not in _FIRST]
    width = max((len(k) for k in keys), default=0)
    out = []
    for key in keys:
        value = meta[key]
        if isinstance(value, dict) and "rows" in value and "columns" in value:
            rows = value["rows"]
            out.append(f"{indent}{key:<{width}}  {len(rows)} rows of {', '.join(value['columns'])}"
                       + (f": {_show(rows)}" if len(rows) <= _LONG_LIST else " (--json for all)"))
        elif isinstance(value, dict):
            out.append(f"{indent}{key}:")
            out.extend(_readable(value, indent + "  "))
        elif key.endswith("_hw") and _is_size(value):  # [h, w] in the JSON; shown as every size is: W x H
            out.append(f"{indent}{key:<{width}}  {value[1]}x{value[0]} (WxH)")
        else:
            out.append(f"{indent}{key:<{width}}  {_show(value)}")
    return out


def _is_size(value) -> bool:  # noqa: ANN001
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)


def _show(value) -> str:  # noqa: ANN001
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and len(value) > _LONG_LIST:
        return f"{len(value)} values (--json for all)"
    if isinstance(value, float):
        return f"{value:.9g}"
    return str(value) if not isinstance(value, list) else json.dumps(value)
