"""Command line: ``explorer search`` and ``explorer list``.

Errors in the user's input print one line, ``explorer: error: ...``, and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import ExplorerError

__all__ = ["main"]


def _positive(kind):
    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
        return v

    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="explorer", description="Co-search a neural network and its hardware.")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("search", help="run the alternating network + hardware co-search")
    s.add_argument("--config", help="TOML config (see README); flags below override it")
    s.add_argument("--target", help="deployment target (targets/*.toml), default vta")
    s.add_argument("--space", help="network search space: chain or nb201")
    s.add_argument("--dataset", help="mnist5k, digits, a .npz file (x, y) or an image folder")
    s.add_argument("--latency-ms", type=_positive(float), dest="latency_ms", help="latency limit")
    s.add_argument("--energy-mj", type=_positive(float), dest="energy_mj", help="energy limit per inference")
    s.add_argument("--area-mm2", type=_positive(float), dest="area_mm2", help="area limit")
    s.add_argument("--budget-min", type=_positive(float), dest="budget_min", help="search wall-clock budget")
    s.add_argument("--steps", type=_positive(int), help="maximum search steps")
    s.add_argument("--epochs", type=int, help="retraining epochs of the derived network (0 skips)")
    s.add_argument("--seed", type=int)
    s.add_argument("--method", default="cosearch", choices=["cosearch", "sequential", "random"],
                   help="co-search, or a baseline in the same harness")
    s.add_argument("--out", help="run folder (default runs/<space>-<target>-<time>)")
    s.add_argument("--force", action="store_true", help="replace an existing run folder once the new run succeeds")
    s.add_argument("--no-progress", action="store_true")
    sub.add_parser("list", help="list registered data sets, spaces, targets and ops")
    return p


def cmd_search(a) -> int:
    import time

    from .api import run_search
    from .config import load_config

    overrides = {k: getattr(a, k) for k in ("target", "space", "dataset", "latency_ms", "energy_mj", "area_mm2",
                                             "budget_min", "steps", "epochs", "seed")}
    cfg = load_config(a.config, overrides)
    out = a.out or f"runs/{cfg.space}-{cfg.target}-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = run_search(cfg, out, method=a.method, force=a.force, progress=not a.no_progress)
    fig = summary["figures"]
    print(f"design      {summary['genotype']}")
    print("hardware    " + " ".join(f"{k}={v}" for k, v in summary["hardware"].items()))
    print(f"latency     {fig['latency_ms']:.4f} ms   energy {fig['energy_mJ']:.4f} mJ   area {fig['area_mm2']:.3f} mm2"
          + ("" if not summary["limits"] else f"   limits {'met' if summary['limits_met'] else 'NOT met'}"))
    if "test_accuracy" in summary:
        print(f"accuracy    {summary['test_accuracy'] * 100:.2f}% on the test split after retraining "
              f"({summary['retrain']['epochs']} epochs)")
    print(f"results in  {summary['run_dir']}/  (summary.json, design.json, hw_config.json, history.jsonl, search.png)")
    return 0


def cmd_list(a) -> int:
    from .data import DATASETS
    from .space import SPACES
    from .space.ops import OPS
    from .targets import target_names

    print(json.dumps({"datasets": DATASETS.names(), "spaces": SPACES.names(), "targets": target_names(),
                      "ops": OPS.names()}, indent=2))
    return 0


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    try:
        return {"search": cmd_search, "list": cmd_list}[a.cmd](a)
    except ExplorerError as e:
        print(f"explorer: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("explorer: interrupted; earlier results are untouched", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
