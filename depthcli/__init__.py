"""depthcli: exact, fast Depth-Anything depth maps.

Public API: ``load_model(source, ...)`` (the torch module) and ``predict(model, image, ...,
backend=None)`` (``backend="openvino"`` runs it converted for the CPU; the default is the torch
model itself). Imported lazily so that ``depthcli --version`` never pays for importing torch.
"""
from ._version import __version__

__all__ = ["__version__", "load_model", "predict"]


def __getattr__(name: str):  # noqa: ANN202
    if name == "load_model":
        from .runtime.loading import load_model

        return load_model
    if name == "predict":
        from .runtime.predictor import predict

        return predict
    raise AttributeError(f"module 'depthcli' has no attribute {name!r}")
