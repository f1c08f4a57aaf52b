"""The one place rtseg's version is written (the package, the export cache key and ``rtseg --version`` read it)."""
__version__ = "0.1.0"
