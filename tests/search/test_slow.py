"""Slow end-to-end checks on the real data (the slow tier, `make test-slow`)."""

import pytest

from explorer.api import run_search
from explorer.config import load_config


@pytest.mark.slow
def test_demo_configuration_reaches_97_percent_on_mnist5k(tmp_path):
    s = run_search(load_config(None), tmp_path / "demo", progress=False)
    assert s["test_accuracy"] >= 0.97, s


@pytest.mark.slow
def test_short_latency_limited_search_on_mnist5k(tmp_path):
    cfg = load_config(None, {"steps": 60, "budget_min": 1.5, "epochs": 10, "latency_ms": 0.15})
    cfg.search.warmup_steps = 15
    s = run_search(cfg, tmp_path / "lim", progress=False)
    assert s["limits_met"] and s["figures"]["latency_ms"] <= 0.15
    assert s["test_accuracy"] > 0.9, s
