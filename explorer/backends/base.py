"""The target-backend interface and its registry.

A backend is what a *kind* of target does: the analytical accelerator (``vta``), TVM on the host CPU
(``tvm-cpu``), TVM on an NVIDIA GPU (``tvm-gpu``), a device known by its latency table
(``latency-table``), or a plug-in named ``package.module:Class`` in a target TOML. Everything that depends on the kind of target is asked of the backend; nothing outside
``explorer.backends`` compares target names or cost-model kinds.

Lifecycle in a search: :meth:`TargetBackend.check` validates the target's knobs;
:meth:`~TargetBackend.cost_model` builds the differentiable model for a network space and the
hardware space; :meth:`~TargetBackend.measurer` gives the loop its source of truth (or None);
after the search, :meth:`~TargetBackend.finish` runs what the target does with the retrained design
(the accelerator compiles and simulates it). Outside a search: :meth:`~TargetBackend.compile`,
:meth:`~TargetBackend.measure`, :meth:`~TargetBackend.deploy`, :meth:`~TargetBackend.tune` and
:meth:`~TargetBackend.calibrate`, each of which a backend may not offer (one clear error).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path

from ..errors import ConfigError, UnknownNameError
from ..registry import Registry

__all__ = ["TargetBackend", "BACKENDS", "create_backend", "backend_names"]

BACKENDS: Registry = Registry("target backend")
_BUILTIN = ("accelerator", "tvm_cpu", "tvm_gpu", "table")


def _load_builtins() -> None:
    for m in _BUILTIN:
        importlib.import_module(f"{__package__}.{m}")


def backend_names() -> list[str]:
    _load_builtins()
    return BACKENDS.names()


def create_backend(target) -> "TargetBackend":
    """The backend a target names: a registered name, or ``package.module:Class``."""
    name = target.backend_name
    if ":" in name:
        mod, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise UnknownNameError(f"target {target.name!r}: backend {name!r} cannot be imported ({e})") from None
        if not (isinstance(cls, type) and issubclass(cls, TargetBackend)):
            raise ConfigError(f"target {target.name!r}: {name!r} is not a TargetBackend")
        b = cls(target)
    else:
        _load_builtins()
        b = BACKENDS.create(name, target)
    b.check(target.hardware_space())
    return b


class TargetBackend(ABC):
    """What one kind of target does. Subclasses set :attr:`resources` and implement
    :meth:`cost_model`; the rest have defaults (no source of truth, nothing after a search) or say
    that the target does not offer them.

    Args:
        target: the :class:`~explorer.backends.target.Target` (TOML) this backend serves.
    """

    #: the resources the backend's cost model prices (limits on others are refused up front)
    resources: tuple[str, ...] = ()
    #: True when the backend times code on the machine's own CPU (searches beside it would skew it)
    times_on_host: bool = False
    #: knobs the hardware space must have
    required_knobs: tuple[str, ...] = ()
    #: True when the backend reads ``explorer calibrate`` files (``--calibration``); others refuse one
    reads_calibration: bool = False
    #: True when ``deploy`` tunes the design's kernels for the target before building
    tunes_on_deploy: bool = False
    #: the C++ compiler that links libraries for the device (None: the host's; TVM backends read
    #: ``options.cc``)
    cc: str | None = None

    def __init__(self, target):
        self.target = target

    @property
    def name(self) -> str:
        return self.target.name

    def check(self, hw) -> None:
        """Refuse a hardware space the backend cannot price."""
        names = {k.name for k in hw.knobs}
        missing = [k for k in self.required_knobs if k not in names]
        if missing:
            raise ConfigError(f"target {self.name!r}: its backend needs knobs {missing}")

    # -- the search ---------------------------------------------------------------------------------
    @abstractmethod
    def cost_model(self, space, hw, calibration: str | None = None, store_path=None, progress: bool = False):
        """The differentiable :class:`~explorer.cost.base.CostModel` of ``space`` on ``hw``."""

    def measurer(self, cost_model, calibration: str | None = None, timing: str = "between-steps"):
        """The loop's source of truth (a :class:`~explorer.measure.base.Measurer`), or None.
        ``timing`` is the search's ``measure_timing`` (for measurers that time on shared cores)."""
        return None

    def finish(self, space, result, cost_model, work: Path) -> dict:
        """Runs after a search whose design was retrained (``work/weights.pt``); its dict goes into
        the summary under the key :attr:`finish_key`."""
        return {}

    finish_key = "finished"

    def hw_config_json(self, config) -> dict:
        """The derived hardware configuration as written to ``hw_config.json``."""
        return config.as_dict()

    def load_hw_config(self, path: str | None):
        """A configuration file of this target's hardware (or its default configuration)."""
        hw = self.target.hardware_space()
        return hw.load_config(path) if path else hw.default_config()

    # -- outside a search ---------------------------------------------------------------------------
    def _unsupported(self, what: str, hint: str = ""):
        raise ConfigError(f"target {self.name!r} ({self.target.backend_name}) does not {what}" + (f"; {hint}" if hint else ""))

    def compile(self, model: str, out: str | None = None, shapes: dict | None = None, **options) -> tuple[dict, list[str]]:
        """Compile an ONNX model for the target: (card or stats written to disk, lines for people)."""
        self._unsupported("compile ONNX models")

    def measure(self, model: str, shapes: dict | None = None, **options) -> list[str]:
        """Measure a model (or a library built by :meth:`compile`) on the device; lines for people."""
        self._unsupported("measure on a device", "it is priced by its model or simulator")

    def deploy(self, run_dir: str, out: str, schedules=None, **tuning) -> dict:
        self._unsupported("deploy libraries", "explorer compile --target <accelerator> simulates one")

    def tune(self, mod, **options):
        self._unsupported("tune schedules")

    def calibrate(self, space, samples: int, seed: int = 0, progress=None) -> dict:
        self._unsupported("calibrate a model against a simulator", "measured targets learn from measurements")
