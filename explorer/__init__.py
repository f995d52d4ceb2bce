"""Codesign Explorer: differentiable co-search of a neural network and the hardware that runs it.

``import explorer`` is light: torch, TVM and friends load inside the functions that need them.
"""

__all__ = ["run_search", "build_problem", "load_config", "DesignPoint"]
__version__ = "0.1.0"


def __getattr__(name):
    if name in ("run_search", "build_problem"):
        from . import api

        return getattr(api, name)
    if name == "load_config":
        from .config import load_config

        return load_config
    if name == "DesignPoint":
        from .space.design import DesignPoint

        return DesignPoint
    raise AttributeError(name)
