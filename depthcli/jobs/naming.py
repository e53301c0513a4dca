"""What an input's outputs are called: ONE rule for images, videos and the cluster doors.

An input's outputs are named after its stem (``a.jpg`` -> ``a_depth.png``; ``a.mp4`` ->
``a_depth.mp4``, ``a_depth.json``, ``a_depth_frames/``). When two inputs of a run would get
the same name in the same output folder (``a.jpg`` and ``a.png``; ``shots/a.jpg`` and
``other/a.jpg`` with ``-o out/``), each keeps just enough more of its own path to be told
apart: first its suffix (``a_jpg``), then its folders, nearest first (``shots_a_jpg``,
``other_a_jpg``). An output never takes the name of one of the run's own inputs either (an
input ``a_depth.png`` beside ``a.png`` makes the latter ``a_png_depth.png``), so no output
replaces another output, or an input, of the same run. A clash no path can resolve is refused
before anything is written (``NameClash``: exit 2 in the CLI).

Names are compared case-insensitively (macOS and Windows folders are), but two names that
differ only in case stay as they are when nothing else tells them apart: on a file system where
they could collide, both inputs could not exist side by side in the first place.
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

OUTPUT_MARK = "_depth"  # <stem>_depth.<suffix>, <stem>_depth.json, <stem>_depth_frames/


class NameClash(ValueError):
    """Inputs whose outputs would land on the same path, whatever part of their paths is kept."""


@dataclass(frozen=True)
class NameSource:
    """One input as far as naming goes: where its outputs go and what its path holds."""

    folder: str  # the output folder, as ``folder_key`` gives it
    stem: str  # the input's name without its suffix (``a`` for ``a.jpg``)
    suffix: str = ""  # without the dot (``jpg``); "" for none
    parents: tuple[str, ...] = ()  # the input's folders, outermost first

    @property
    def levels(self) -> int:
        """How many names this input can take: the stem, with the suffix, then one more folder each."""
        return 2 + len(self.parents)

    def name(self, level: int) -> str:
        """``a``, ``a_jpg``, ``shots_a_jpg``, ``photos_shots_a_jpg``, ... for level 0, 1, 2, 3, ..."""
        own = f"{self.stem}_{self.suffix}" if self.suffix else self.stem
        if level == 0:
            return self.stem
        folders = self.parents[len(self.parents) - (level - 1):] if level > 1 else ()
        return "_".join([*folders, own])


def folder_key(folder: str | Path) -> str:
    """An output folder as one comparable string (``out``, ``./out/`` and ``/abs/out`` are one)."""
    return os.path.normcase(os.path.abspath(os.fspath(folder)))


def source_for(folder: str | Path, input_path: str | Path | None, name: str | None = None, *,
               has_suffix: bool = True) -> NameSource:
    """The ``NameSource`` of an input at ``input_path`` (None: stdin or a stream, called ``name``)
    whose outputs go to ``folder``. ``has_suffix=False``: the name is a stem as a whole (an image
    sequence's ``frame.v2``), not a file name with an extension."""
    file_name = Path(name if name is not None else input_path).name
    path = Path(file_name)
    stem, suffix = (path.stem, path.suffix.lstrip(".")) if has_suffix and path.suffix else (file_name, "")
    parents: tuple[str, ...] = ()
    if input_path is not None:
        parents = tuple(p for p in Path(os.path.abspath(os.fspath(input_path))).parent.parts
                        if p != Path(p).anchor)
    return NameSource(folder=folder_key(folder), stem=stem, suffix=suffix, parents=parents)


def reserved_by_inputs(input_paths: Iterable[str | Path | None],
                       output_suffixes: Sequence[str]) -> set[tuple[str, str]]:
    """(folder, stem) pairs no output may take because an input of the run already has that
    output's name: an input ``x/a_depth.png`` reserves the stem ``a`` in ``x`` for PNG outputs."""
    reserved = set()
    for path in input_paths:
        if path is None:
            continue
        name = Path(path).name
        for suffix in output_suffixes:
            tail = f"{OUTPUT_MARK}.{suffix}"
            if name.lower().endswith(tail.lower()) and len(name) > len(tail):
                reserved.add((folder_key(Path(path).parent), name[: -len(tail)].casefold()))
    return reserved


def distinct_stems(sources: Sequence[NameSource], reserved: set[tuple[str, str]] | frozenset = frozenset()
                   ) -> list[str]:
    """The stem each input's outputs are named after, in order: its own stem unless another
    input's outputs (or an input in ``reserved``, see ``reserved_by_inputs``) would take the
    same name in its output folder; then as much more of its path as tells them apart.
    Raises ``NameClash`` when nothing does."""
    levels = [0] * len(sources)
    while True:
        names = [s.name(level) for s, level in zip(sources, levels, strict=True)]
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, (source, name) in enumerate(zip(sources, names, strict=True)):
            groups[(source.folder, name.casefold())].append(i)
        clashing = [members for key, members in groups.items()
                    if (len(members) > 1 or key in reserved) and not _case_only(members, names, sources, key, reserved)]
        if not clashing:
            return names
        moved = False
        for members in clashing:
            for i in members:
                if levels[i] + 1 < sources[i].levels:
                    levels[i] += 1
                    moved = True
        if not moved:
            members = clashing[0]
            who = ", ".join(sources[i].name(sources[i].levels - 1) for i in members[:3])
            whose = "an input of this run" if len(members) == 1 else "each other"
            raise NameClash(f"the outputs of {who} would replace {whose} in {sources[members[0]].folder}, "
                            f"whatever part of their paths is kept; give them other names or output folders")


def _case_only(members: list[int], names: list[str], sources: Sequence[NameSource], key: tuple[str, str],
               reserved: set[tuple[str, str]] | frozenset) -> bool:
    """Names that differ only in case and that no longer part of their paths would tell apart
    either: kept as they are (see the module note)."""
    if key in reserved or len({names[i] for i in members}) < len(members):
        return False
    longest = {sources[i].name(sources[i].levels - 1).casefold() for i in members}
    return len(longest) < len(members)
