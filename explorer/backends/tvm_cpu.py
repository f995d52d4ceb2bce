"""The ``tvm-cpu`` backend: the host CPU through TVM (LLVM), priced by measurements.

Cost model: every distinct workload of the space built standalone with TVM and timed on this
machine for every (device, threads, batch) setting, cached in the store
(:mod:`explorer.measure.workloads`), summed per network, with a correction the loop refits on
end-to-end measurements of derived designs (:class:`explorer.measure.background.BackgroundMeasurer`).
Builds apply the user's and the shipped schedule databases (:mod:`explorer.deploy.schedules`);
``explorer tune`` writes the user's.

A device elsewhere (a board, a phone, a server) is the same backend with options in its TOML::

    [options]
    tvm_target = {kind = "llvm", mtriple = "aarch64-linux-gnu", mcpu = "cortex-a72"}  # default: this CPU
    # (or TVM's old string form "llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a72")
    cc = "aarch64-linux-gnu-g++"      # the cross compiler that links the library (default: the host's)
    [options.rpc]
    tracker = "127.0.0.1:9190"        # a TVM RPC tracker (explorer rpc up, or TVM's own)
    key = "rk3399"                    # the device key its servers registered with
    workers = 2                       # timing jobs at once (default: the key's free servers)
    timeout_s = 120                   # one attempt on a device, once it has a server
    wait_s = 60                       # waiting for a free server
    attempts = 3                      # tries per job (each on whichever server is free)

Then the workloads of the cost model, the search's end-to-end measurements and ``explorer measure``
are built here and timed on the device's servers (:class:`explorer.measure.devices.DevicePool`),
and every record carries the device key (``rpc_key``), so one device's figures never price another.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .base import BACKENDS, TargetBackend

__all__ = ["TVMBackend", "TVMCPUBackend"]


class TVMBackend(TargetBackend):
    """What every TVM target shares; subclasses give the TVM target and the device type."""

    #: ``deploy`` and the search tune kernels on this machine (MetaSchedule, local runner)
    tunes_on_deploy = False

    resources = ("latency_s", "energy_j")
    required_knobs = ("DEVICE", "THREADS", "BATCH")
    #: TVM's name of the device that runs the built code
    device_type = "cpu"

    def tvm_target(self, num_cores: int | None = None, arch: str | None = None):
        raise NotImplementedError

    # -- a device reached over TVM RPC ------------------------------------------------------------------
    @property
    def rpc(self) -> tuple[str, int, str] | None:
        """(host, port, key) of the target's ``[options.rpc]``, or None: timed on this machine."""
        from ..measure.devices import parse_rpc_option

        return parse_rpc_option(self.target.options.get("rpc"), self.target.path or self.target.name)

    @property
    def cc(self) -> str | None:
        """The C++ compiler that links libraries for the device (``options.cc``; None: the host's)."""
        cc = self.target.options.get("cc")
        if cc is not None and (not isinstance(cc, str) or not cc.strip()):
            from ..errors import ConfigError

            raise ConfigError(f"{self.target.path or self.target.name}: options.cc must name a compiler, got {cc!r}")
        return cc

    @property
    def where(self) -> dict:
        """Knobs every record of this target carries: where it was timed (the RPC device key)."""
        rpc = self.rpc
        return {"rpc_key": rpc[2]} if rpc else {}

    def __init__(self, target):
        super().__init__(target)
        # a malformed [options] is one error when the target loads, not minutes into a search
        _ = (self.rpc, self.cc, self._pool_kw())

    def _pool_kw(self) -> dict:
        from ..errors import ConfigError

        where = self.target.path or self.target.name
        opts = dict(self.target.options.get("rpc") or {})
        unknown = sorted(set(opts) - {"tracker", "key", "workers", "timeout_s", "wait_s", "attempts"})
        if unknown:
            raise ConfigError(f"{where}: [options.rpc] unknown key(s) {unknown}; valid: tracker, key, workers, timeout_s, "
                              "wait_s, attempts")
        kw = {}
        for k in ("workers", "timeout_s", "wait_s", "attempts"):
            if k in opts:
                v = opts[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v != v or v == float("inf"):
                    raise ConfigError(f"{where}: [options.rpc] {k} = {v!r}: must be a positive number")
                kw[k] = int(v) if k in ("workers", "attempts") else float(v)
        return kw

    def device_pool(self, rpc=None):
        """A :class:`~explorer.measure.devices.DevicePool` on ``rpc`` (default: the target's), with
        the settings of ``[options.rpc]``."""
        from ..measure.devices import DevicePool, check_rpc

        rpc = rpc or self.rpc
        check_rpc(rpc)  # the tracker answers and the key has a server: else one clear error now
        return DevicePool(rpc, **self._pool_kw())

    def databases(self, spec=None) -> list[Path]:
        """Schedule databases for a build: ``spec`` (folder, ``"none"``), else the user's and the shipped."""
        from ..deploy.schedules import resolve

        return resolve(spec, self.name)

    # -- the search ---------------------------------------------------------------------------------
    def cost_model(self, space, hw, calibration=None, store_path=None, progress=False):
        from ..cost.measured import MeasuredCostModel, distinct_items
        from ..deploy.schedules import database_id
        from ..deploy.tvm_build import target_json, toolchain_versions
        from ..measure.store import Store, default_store_path
        from ..measure.workloads import measure_workloads

        slots = space.cost_slots()
        items = distinct_items(slots, hw)
        table = {}
        tc = toolchain_versions()
        dbs = self.databases()
        dtc = {**tc, "schedules": database_id(dbs)} if dbs else tc
        devices = self.device_pool() if self.rpc else None
        try:  # the device pool stops, whatever happens
            with Store(store_path or default_store_path()) as st:
                for device in hw.knob("DEVICE").values:
                    for threads in hw.knob("THREADS").values:
                        bar = None
                        if progress:
                            from tqdm import tqdm

                            bar = tqdm(total=len(items), desc=f"workloads {device}/{threads}t", unit="wl", dynamic_ncols=True)

                        def tick(done, total, bar=bar):
                            if bar is not None:
                                bar.n = done
                                bar.refresh()

                        got = measure_workloads(items, device, threads, st, dtc, progress=tick, database=dbs or None,
                                                target=target_json(self.tvm_target(threads)), device_type=self.device_type,
                                                devices=devices, where=self.where, cc=self.cc)
                        if bar is not None:
                            bar.close()
                        for (w, b), sec in got.items():
                            table[(w, b, device, threads)] = sec
        finally:
            if devices is not None:
                devices.close()
        return MeasuredCostModel(slots, space.choices(), hw, table, core_w=dict(self.target.power).get("core_w", 10.0))

    def measurer(self, cost_model, calibration=None, timing="between-steps"):
        from ..deploy.tvm_build import target_json, toolchain_versions
        from ..measure.background import BackgroundMeasurer
        from ..measure.store import Store, default_store_path

        from ..deploy.schedules import tuning_database

        rpc = self.rpc
        # tuning in the search measures candidates on this machine: not for a device reached over RPC
        return BackgroundMeasurer(Store(default_store_path()), toolchain_versions(), target=target_json(self.tvm_target()),
                                  device_type=self.device_type, databases=self.databases(), owns_store=True,
                                  timing=timing, tune_db=tuning_database(self.name) if self.tunes_on_deploy and not rpc else None,
                                  devices=self.device_pool() if rpc else None, where=self.where, cc=self.cc)

    # -- outside a search ---------------------------------------------------------------------------
    def compile(self, model, out=None, shapes=None, num_cores=None, arch=None, schedules=None, store=None, layout="NCHW",
                prepack=False, **_):
        from ..deploy.tvm_build import build, load_onnx, toolchain_versions
        from ..errors import ExplorerError
        from ..measure.store import MeasureRecord, Store, default_store_path

        m = load_onnx(model, shapes)
        out = out or str(Path(model).with_suffix(f".{self.name}.so"))
        knobs = {"num_cores": num_cores, "arch": arch}
        database = self.databases(schedules)  # a bad --schedules is the user's input, not a failed build of the model
        with Store(store or default_store_path()) as st:
            try:
                card = build(m, self.tvm_target(num_cores, arch), out, database=database, target_name=self.name,
                             layout=layout, cc=self.cc, prepack=prepack)
            except ExplorerError as e:
                st.add(MeasureRecord(m.sha256, "build", self.name, knobs, toolchain_versions(), ok=False, error=str(e)))
                raise
            st.add(MeasureRecord(m.sha256, "build", self.name, knobs, card["toolchain"], tuned=card["tuned"], payload=card))
        sched = f", {card['scheduled_kernels']} with tuned schedules" if card["schedule_database"] else ", untuned"
        how = f"{layout} layout{', weights prepacked' if prepack else ''}, "
        return card, [f"wrote {out} and {out}.json ({how}{len(card['workloads'])} kernels{sched}, built in "
                      f"{card['build_s']:.1f} s)"]

    def measure(self, model, shapes=None, repeat=30, number=10, num_cores=None, vs=None, schedules=None, store=None,
                rpc=None, **_):
        """Time a model (built here for the host CPU) here, or with ``rpc`` = (host, port, key) on a
        server of that TVM RPC tracker; the record's knobs carry ``rpc_key`` then."""
        from ..deploy.tvm_build import build, load_onnx, toolchain_versions
        from ..errors import ExplorerError, ModelError
        from ..measure.devices import check_rpc, measure_tvm_rpc
        from ..measure.local import measure_onnxruntime, measure_tvm
        from ..measure.store import MeasureRecord, Store, default_store_path

        path = Path(model)
        threads = num_cores or os.cpu_count() or 1
        rpc = rpc or self.rpc
        if rpc is not None:
            check_rpc(rpc)  # before the build: a wrong address costs no build time
        if path.suffix == ".so":
            card_path = path.with_suffix(".so.json")
            if not card_path.is_file():
                raise ModelError(f"{path}: no card {card_path.name} beside the library (built by explorer compile?)")
            card = json.loads(card_path.read_text())
            inputs = {k: (tuple(v["shape"]), v["dtype"]) for k, v in card["inputs"].items()}
            lib, onnx_path, key = path, Path(card["model"]), card["model_sha256"]
        else:
            m = load_onnx(path, shapes)
            inputs, onnx_path, key = m.inputs, path, m.sha256
            lib = Path(os.environ.get("TMPDIR", "/tmp")) / f"explorer-{key[:16]}-{self.name}-{threads}.so"
            card = build(m, self.tvm_target(threads), lib, database=self.databases(schedules), target_name=self.name,
                         cc=self.cc)
        knobs = {"threads": threads, "repeat": repeat, "number": number}
        if rpc is not None:
            knobs.update(rpc_key=rpc[2], rpc_tracker=f"{rpc[0]}:{rpc[1]}")
        lines = []
        with Store(store or default_store_path()) as st:
            try:
                if rpc is None:
                    t = measure_tvm(lib, inputs, repeat=repeat, number=number, device=self.device_type)
                else:
                    t = measure_tvm_rpc(lib, inputs, rpc, repeat=repeat, number=number, device=self.device_type)
            except ExplorerError as e:
                st.add(MeasureRecord(key, "measure", self.name, knobs, toolchain_versions(), ok=False, error=str(e)))
                raise
            tuned = bool(card.get("tuned"))
            st.add(MeasureRecord(key, "measure", self.name, knobs, toolchain_versions(), latency_ms=t["median_ms"], tuned=tuned,
                                 payload={**t, "schedule_database_id": card.get("schedule_database_id")}))
            lines.append(f"tvm          median {t['median_ms']:.4f} ms   p10 {t['p10_ms']:.4f}   p90 {t['p90_ms']:.4f}   "
                         f"({t['n']} x {number} runs, {threads} threads, "
                         f"{'tuned' if tuned else 'untuned' if not card.get('scheduled_kernels') else 'partly tuned'})")
            if rpc is not None:
                lines.append(f"ran on an RPC server of key {rpc[2]} (tracker {rpc[0]}:{rpc[1]})")
            if vs == "onnxruntime":
                if not onnx_path.is_file():
                    raise ModelError(f"{onnx_path}: the ONNX model of this library is gone; measure the .onnx instead")
                o = measure_onnxruntime(onnx_path, inputs, threads, repeat=repeat, number=number)
                st.add(MeasureRecord(key, "measure", "onnxruntime", knobs, toolchain_versions(), latency_ms=o["median_ms"], payload=o))
                lines.append(f"onnxruntime  median {o['median_ms']:.4f} ms   p10 {o['p10_ms']:.4f}   p90 {o['p90_ms']:.4f}")
                lines.append(f"ratio tvm / onnxruntime = {t['median_ms'] / o['median_ms']:.2f}")
        return lines

    def deploy(self, run_dir, out, schedules=None, **tuning) -> dict:
        """See :func:`explorer.backends.tvm_deploy.deploy` (``tuning``: trials, minutes, progress)."""
        from .tvm_deploy import deploy

        return deploy(self, run_dir, out, schedules=schedules, **tuning)


def _target_dict(spec):
    """A TVM target from a TOML table (``{kind = "llvm", mtriple = "...", mcpu = "..."}``, TVM's JSON
    form) or the command-line form ``"llvm -mtriple=... -mcpu=... -mattr=+neon,+v8"`` (which TVM
    0.27 no longer parses itself): the dict TVM's ``Target`` takes."""
    if isinstance(spec, dict):
        return dict(spec)
    if not isinstance(spec, str) or not spec.split():
        raise ValueError("expected a target string or a table with kind = ...")
    kind, *opts = spec.split()
    out: dict = {"kind": kind}
    for o in opts:
        k, eq, v = o.lstrip("-").partition("=")
        if not o.startswith("-") or not k:
            raise ValueError(f"option {o!r}: expected -name=value")
        out[k] = (v.split(",") if k in ("mattr", "keys", "libs") else v) if eq else True
    return out


@BACKENDS.register("tvm-cpu")
class TVMCPUBackend(TVMBackend):
    device_type = "cpu"
    tunes_on_deploy = True

    @property
    def times_on_host(self) -> bool:
        """Its truth is timed on this machine's cores (an exploration runs it alone), unless a device
        over RPC times it."""
        return self.rpc is None

    def tvm_target(self, num_cores=None, arch=None):
        """This CPU (detected), or the target's ``options.tvm_target`` (a device of another kind)."""
        from ..deploy.tvm_build import as_target, host_target, target_json

        spec = self.target.options.get("tvm_target")
        if spec is None:
            return host_target(num_cores)
        from tvm.target import Target

        from ..errors import ConfigError

        try:
            t = Target(_target_dict(spec))
        except Exception as e:  # noqa: BLE001 - TVM's parser: one line to the user
            why = next((ln for ln in str(e).strip().splitlines() if ln.strip()), type(e).__name__)[:200]
            raise ConfigError(f"{self.target.path or self.target.name}: options.tvm_target {spec!r} is not a TVM target "
                              f"({why})") from None
        return as_target(target_json(t), num_cores=num_cores) if num_cores else t

    def tune(self, mod, trials=512, db=None, num_cores=None, per_iter=16, rpc=None, progress=True, seed=0, label="tune",
             max_seconds=None, input_shapes=None):
        """MetaSchedule tuning of a module's kernels into ``db`` (default: the user's database); the
        default databases' records seed it (tuned for this target: copied; for another: a warm start)."""
        from ..deploy.schedules import user_database
        from ..deploy.tune import tune_module

        num_cores = int(num_cores or os.cpu_count() or 1)
        rpc = rpc or self.rpc  # a device over RPC runs the candidates there
        return tune_module(mod, self.tvm_target(num_cores), user_database(self.name, db), trials=trials,
                           num_cores=num_cores, per_iter=per_iter, rpc=rpc, progress=progress, seed=seed, label=label,
                           max_seconds=max_seconds, warm_start=self.databases(), input_shapes=input_shapes)
