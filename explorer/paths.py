"""Where things live: data shipped with the package, and what users write.

Shipped (read only): the target TOMLs ``targets/*.toml`` and the built-in schedule databases
``schedules/<target>/``, folders at the top of the repository. In a source checkout, and in an
editable install (which imports the package from one), they are read there; a wheel carries them as
package data under ``explorer/resources/`` (``pyproject.toml`` maps them there), found through
:mod:`importlib.resources`, so an installed copy works from any folder.

Written by users (never into the installed package): the folder ``$EXPLORER_HOME``, by default
``runs/`` under the working folder. It holds the measurement store (``store.sqlite``, or
``$EXPLORER_STORE``), the user's schedule databases (``schedules/<target>/``, where ``explorer tune``
writes unless ``--db`` says otherwise) and the user's own target TOMLs (``targets/*.toml``).
"""

from __future__ import annotations

import functools
import os
import tomllib
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
    """A file or folder of the shipped data (``targets/...``, ``schedules/...``) as a filesystem path:
    in the source checkout the package was imported from, else inside the installed package."""
    root = _checkout()
    if root is not None:
        return root.joinpath(*parts)
    return Path(str(resources.files("explorer").joinpath("resources", *parts)))


@functools.cache
def _checkout() -> Path | None:
    """The repository the package is imported from (its ``pyproject.toml`` names this project and it
    has ``targets/``), or None for an installed copy."""
    root = Path(__file__).resolve().parent.parent
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {}).get("name")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return root if project == "codesign-explorer" and (root / "targets").is_dir() else None


def shipped_targets_dir() -> Path:
    return shipped("targets")


def user_targets_dir() -> Path:
    return home() / "targets"


def shipped_schedules(target: str) -> Path:
    return shipped("schedules", target)


def user_schedules(target: str) -> Path:
    return home() / "schedules" / target
