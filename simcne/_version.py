"""The version of simcne (a model file records the one that wrote it)."""

__version__ = "0.1.0"
