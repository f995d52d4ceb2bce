"""Deployment targets (re-exported from :mod:`explorer.backends.target`, where they are loaded)."""

from .backends.target import Target, load_target, target_names

__all__ = ["Target", "load_target", "target_names"]
