"""Errors that reach the user as one clear message and exit code 2."""

__all__ = ["ExplorerError", "ConfigError", "UnknownNameError", "InfeasibleLimitsError", "DataError", "ModelError"]


class ExplorerError(Exception):
    """Base of every error caused by the user's input (config, names, data, limits)."""


class ConfigError(ExplorerError):
    """A configuration file or value is malformed or out of range."""


class UnknownNameError(ExplorerError):
    """A registry lookup failed; the message lists the valid names."""


class InfeasibleLimitsError(ExplorerError):
    """The resource limits are below the cheapest design the spaces can express."""


class DataError(ExplorerError):
    """A data set could not be read or has the wrong shape or labels."""


class ModelError(ExplorerError):
    """An ONNX model (or a library built from one) cannot be read, imported, built or run."""
