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
