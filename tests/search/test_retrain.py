"""The retraining recipe's augmentation and loss options."""

import pytest
import torch

from explorer.config import load_config
from explorer.errors import ConfigError
from explorer.search.train import translate


def test_shift_only_draws_as_before_and_rotation_moves_what_a_shift_cannot():
    x = torch.zeros(32, 1, 28, 28)
    x[:, :, 4:24, 13:15] = 1.0  # a vertical bar
    a = translate(x, 2.8, torch.Generator().manual_seed(0))
    b = translate(x, 2.8, torch.Generator().manual_seed(0), rotate_deg=0.0, scale=0.0)
    assert torch.equal(a, b)
    # the shift is drawn first, so the same seed shifts the same way with or without rotation
    r = translate(x, 0.0, torch.Generator().manual_seed(0), rotate_deg=30.0)
    cols = (r[:, 0] > 0.5).any(1).sum(1)  # columns the 2-pixel bar covers: a rotated bar spans more
    assert cols.float().mean() > 4 and cols.min() >= 2
    z = translate(x, 0.0, torch.Generator().manual_seed(1), scale=0.5)
    assert z.shape == x.shape and not torch.allclose(z.sum((1, 2, 3)), x.sum((1, 2, 3)))  # zoom changes the area


@pytest.mark.parametrize("key,value", [("rotate_deg", -1), ("scale", 1.0), ("label_smoothing", 1.0), ("seeds", 0),
                                       ("seeds", 1.5)])
def test_bad_recipe_options_are_refused(tmp_path, key, value):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[retrain]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match="retrain"):
        load_config(str(cfg))


def test_several_retraining_seeds_report_their_mean_and_keep_the_first(tmp_path):
    """retrain.seeds = 2: each seed's test accuracy, their mean as the run's, and the first seed's
    weights, which are the weights a one-seed run keeps."""
    import dataclasses
    import json

    from explorer.api import run_search
    from tests.conftest import tiny_config

    one = tiny_config(steps=6, epochs=1)
    two = dataclasses.replace(one, retrain=dataclasses.replace(one.retrain, seeds=2))
    a = run_search(one, tmp_path / "one", progress=False)
    b = run_search(two, tmp_path / "two", progress=False)
    assert a["genotype"] == b["genotype"] and "test_accuracies" not in a["retrain"]
    accs = b["retrain"]["test_accuracies"]
    assert len(accs) == 2 and b["retrain"]["seeds"] == 2 and accs[0] == a["test_accuracy"]
    assert b["test_accuracy"] == pytest.approx(sum(accs) / 2) and b["retrain"]["test_accuracy_sd"] >= 0
    wa, wb = (torch.load(tmp_path / d / "weights.pt") for d in ("one", "two"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["test_accuracy"] == b["test_accuracy"]
