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


@pytest.mark.parametrize("key,value", [("rotate_deg", -1), ("scale", 1.0), ("label_smoothing", 1.0)])
def test_bad_recipe_options_are_refused(tmp_path, key, value):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[retrain]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match="retrain"):
        load_config(str(cfg))
