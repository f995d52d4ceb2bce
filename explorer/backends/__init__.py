"""Target backends: one module per kind of target, behind one interface (:class:`TargetBackend`).

``load_target(name).backend()`` gives the backend of a target; ``BACKENDS`` lists the built-in ones.
"""

from .base import BACKENDS, TargetBackend, backend_names, create_backend
from .target import Target, load_target, target_names

__all__ = ["BACKENDS", "TargetBackend", "backend_names", "create_backend", "Target", "load_target", "target_names"]
