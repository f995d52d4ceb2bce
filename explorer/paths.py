"""Where things live: data shipped inside the package, and what users write.

Shipped (read only, found through :mod:`importlib.resources`, so they work from an installed wheel):
``explorer/resources/targets/*.toml`` and the built-in schedule databases
``explorer/resources/schedules/<target>/``.

Written by users (never into the installed package): the folder ``$EXPLORER_HOME``, by default
``runs/`` under the working folder. It holds the measurement store (``store.sqlite``, or
``$EXPLORER_STORE``), the user's schedule databases (``schedules/<target>/``, where ``explorer tune``
writes unless ``--db`` says otherwise) and the user's own target TOMLs (``targets/*.toml``).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

__all__ = ["home", "store_path", "shipped", "shipped_targets_dir", "user_targets_dir", "shipped_schedules",
           "user_schedules"]


def home() -> Path:
    """The user's folder for stores, schedule databases and targets (``$EXPLORER_HOME`` or ``runs``)."""
    return Path(os.environ.get("EXPLORER_HOME") or "runs")


def store_path() -> Path:
    """The default measurement store: ``$EXPLORER_STORE``, else ``<home>/store.sqlite``."""
    return Path(os.environ.get("EXPLORER_STORE") or home() / "store.sqlite")


def shipped(*parts: str) -> Path:
    """A file or folder of the package's data (``explorer/resources/...``) as a filesystem path."""
    return Path(str(resources.files("explorer").joinpath("resources", *parts)))


def shipped_targets_dir() -> Path:
    return shipped("targets")


def user_targets_dir() -> Path:
    return home() / "targets"


def shipped_schedules(target: str) -> Path:
    return shipped("schedules", target)


def user_schedules(target: str) -> Path:
    return home() / "schedules" / target
