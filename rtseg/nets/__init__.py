"""Networks and their registry. Importing this package registers every network."""
from rtseg.nets.registry import create_model, list_models, register_model
from rtseg.nets import fastscnn as _fastscnn  # noqa: F401  (registers "fastscnn")

__all__ = ["create_model", "list_models", "register_model"]
