"""Published models by name (filled in by the model registry work)."""
MODELS: dict[str, object] = {}
