"""Shared fixtures. Model-building helpers live in ``model_factory.py``."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from model_factory import ReferenceModels


@pytest.fixture(scope="session")
def reference_models(tmp_path_factory: pytest.TempPathFactory) -> ReferenceModels:
    """Perturbed transformers models and their checkpoint files, built once per session.

    Imported here, not at module level, so tests that never build a model do not need (or pay
    for importing) transformers.
    """
    from model_factory import ReferenceModels

    return ReferenceModels(tmp_path_factory.mktemp("reference-models"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - cli_helpers.TinyModel
    """A tiny random V2 checkpoint (64 wide, 4 blocks, 2 heads) for the CLI tests: with
    ``--size 70`` an image takes milliseconds. Also the same weights as an anonymous ``.pth``."""
    from cli_helpers import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("cli-model"))


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_model) -> str:  # noqa: ANN001
    """Path of the tiny depthcli ``.safetensors`` checkpoint, as a string for command lines."""
    return str(tiny_model.safetensors)


@pytest.fixture(scope="module")
def one_torch_thread():  # noqa: ANN201
    """One torch thread for a module of tiny networks (``pytestmark = pytest.mark.usefixtures(
    "one_torch_thread")``): on tiny tensors a second OpenMP thread only spins, and on a busy
    2-core machine that turns a 10 ms forward into a second."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
