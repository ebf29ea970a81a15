"""The library version, in a leaf module so any layer can stamp it without importing the package root."""

__version__ = "0.2.0"
