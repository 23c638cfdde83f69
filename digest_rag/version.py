"""The library version, in a module of its own so that no module has to import the package's __init__."""

__version__ = "0.2.0"
