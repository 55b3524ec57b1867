"""FATE plugin for federated lung-nodule classification on LUNA16-style CT data."""

__version__ = "0.1.0"
