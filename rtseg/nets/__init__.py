"""Networks and their registry. Importing this package registers every network."""
from rtseg.nets.registry import create_model, list_models, register_model
from rtseg.nets import bisenetv2 as _bisenetv2  # noqa: F401  (registers "bisenetv2")
from rtseg.nets import ddrnet as _ddrnet  # noqa: F401  (registers "ddrnet23_slim")
from rtseg.nets import fastscnn as _fastscnn  # noqa: F401  (registers "fastscnn")
from rtseg.nets import unet as _unet  # noqa: F401  (registers "unet")

__all__ = ["create_model", "list_models", "register_model"]
