"""``jobs.naming``: the one rule that gives every input of a run its own output name (#25 item 1),
as plain functions (the end-to-end runs are in test_cli_image.py and test_cli_video.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from depthcli.jobs.naming import NameClash, distinct_stems, reserved_by_inputs, source_for


def stems(*inputs: str, folder: str = "out", reserved: set | None = None) -> list[str]:
    return distinct_stems([source_for(folder, p) for p in inputs], reserved or set())


def test_own_stem_unless_another_output_would_take_the_same_name(tmp_path: Path) -> None:
    assert stems("a.jpg", "b.jpg") == ["a", "b"]
    assert stems("a.jpg", "a.png", "b.png") == ["a_jpg", "a_png", "b"]  # the suffix first
    assert stems("shots/a.jpg", "other/a.jpg") == ["shots_a_jpg", "other_a_jpg"]  # then the folders
    assert stems("x/shots/a.jpg", "y/shots/a.jpg") == ["x_shots_a_jpg", "y_shots_a_jpg"]  # as many as needed
    # each output folder is its own namespace
    assert distinct_stems([source_for("o1", "x/a.jpg"), source_for("o2", "y/a.jpg")]) == ["a", "a"]


def test_names_that_differ_only_in_case_clash_unless_nothing_else_tells_them_apart() -> None:
    assert stems("x/A.jpg", "y/a.jpg") == ["x_A_jpg", "y_a_jpg"]  # one folder on macOS/Windows
    assert stems("d/A.jpg", "d/a.jpg") == ["A", "a"]  # only possible where case matters


def test_no_output_takes_the_name_of_an_input() -> None:
    reserved = reserved_by_inputs(["d/a.png", "d/a_depth.png"], ["png"])
    assert distinct_stems([source_for("d", "d/a.png"), source_for("d", "d/a_depth.png")], reserved) == [
        "a_png", "a_depth"]
    assert reserved_by_inputs(["d/a_depth.png"], ["npy"]) == set()  # another format: no clash


def test_what_nothing_tells_apart_is_refused() -> None:
    with pytest.raises(NameClash, match="would replace each other"):
        distinct_stems([source_for("out", None, name="stdin"), source_for("out", None, name="stdin")])
