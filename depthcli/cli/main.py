"""The ``depthcli`` command group. Subcommands live one per module and import torch lazily."""
from __future__ import annotations

import click

from .._version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="depthcli")
def main() -> None:
    """Depth maps from images, videos and webcams with Depth-Anything (V1 and V2)."""
