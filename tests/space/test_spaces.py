"""Contract tests over every registered search space."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from explorer.errors import ConfigError
from explorer.space import SPACES, create_space
from explorer.space.design import DesignPoint
from explorer.space.quant import QuantState
from explorer.backends import load_target

SMALL = {"chain": {"stem_channels": 8, "stages": [[8, 2, 2], [16, 2, 1]]}, "nb201": {"channels": 8}}


@pytest.fixture(params=SPACES.names())
def space(request):
    return create_space(request.param, (1, 12, 12), 5, **SMALL[request.param])


def test_supernet_forward_backward_every_parameter_gets_gradient(space):
    torch.manual_seed(0)
    qs = QuantState((8, 4))
    net = space.build_supernet(qs)
    bits_logits = torch.zeros(2, requires_grad=True)
    qs.set(torch.softmax(bits_logits, 0), torch.softmax(bits_logits, 0))
    x = torch.randn(4, 1, 12, 12)
    y = torch.tensor([0, 1, 2, 3])
    out = net(x, net.probs())
    assert out.shape == (4, 5) and torch.isfinite(out).all()
    F.cross_entropy(out, y).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    zero = [n for n, p in net.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero, zero
    assert bits_logits.grad is not None and bits_logits.grad.abs().sum() > 0
    assert len(net.arch_parameters()) == len(space.choices())
    assert {id(p) for p in net.arch_parameters()}.isdisjoint({id(p) for p in net.weight_parameters()})


def test_derived_networks_forward_backward(space):
    rng = np.random.default_rng(0)
    for _ in range(5):
        g = space.random_genotype(rng)
        # "none" can cut an nb201 cell, leaving parameters no path to the output: exclude it here
        g = {k: ("skip_connect" if v == "none" else v) for k, v in g.items()}
        net = space.build_network(g, QuantState.fixed(8, 4))
        out = net(torch.randn(2, 1, 12, 12))
        assert out.shape == (2, 5) and torch.isfinite(out).all()
        out.sum().backward()
        assert all(p.grad is not None for p in net.parameters())


def test_genotype_string_round_trip(space):
    rng = np.random.default_rng(1)
    for _ in range(10):
        g = space.random_genotype(rng)
        assert space.parse_genotype(space.format_genotype(g)) == g


def test_one_hot_supernet_equals_its_own_subnet_cost(space):
    """Every slot combination exists, and a genotype's workloads come from the table."""
    ch = space.choices()
    for s in space.cost_slots():
        sizes = [len(ch[a]) for a in s.axes]
        assert len(s.table) == int(np.prod(sizes)) if sizes else len(s.table) == 1
    g = space.random_genotype(np.random.default_rng(2))
    assert space.workloads(g)


def test_prune_and_derive(space):
    net = space.build_supernet(QuantState())
    with torch.no_grad():
        for k, a in net.alpha.items():
            a.copy_(torch.arange(len(a), dtype=torch.float))
    removed = net.prune(2)
    for k, opts in net.choice_options.items():
        assert int(net.mask(k).sum()) == min(2, len(opts))
        assert net.derive()[k] == opts[-1]
        p = net.probs()[k]
        assert float(p[~net.mask(k)].sum()) == 0.0
    assert removed


def test_design_point_json_round_trip(space):
    hw = load_target("vta").hardware_space()
    g = space.random_genotype(np.random.default_rng(3))
    d = DesignPoint.make(space, g, "vta", hw.default_config())
    d2 = DesignPoint.from_json(d.as_json())
    assert d2 == d and hash(d2) == hash(d) and d2.key() == d.key()


def test_nb201_standard_string():
    s = create_space("nb201", (3, 32, 32), 10)
    text = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    g = s.parse_genotype(text)
    assert g["edge_2_1"] == "avg_pool_3x3" and g["edge_3_2"] == "skip_connect"
    assert s.format_genotype(g) == text
    for bad in ("|nor_conv_3x3~0|", "|conv9~0|+|none~0|none~1|+|none~0|none~1|none~2|", "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|"):
        with pytest.raises(ConfigError):
            s.parse_genotype(bad)


def test_chain_space_shapes_and_zero_only_where_residual():
    s = create_space("chain", (1, 28, 28), 10)
    ch = s.choices()
    for L in s.layers:
        assert ("zero" in ch[f"op_L{L.index}"]) == L.residual
    assert s.out_hw == (7, 7)


def test_bad_space_options():
    with pytest.raises(ConfigError):
        create_space("chain", (1, 8, 8), 10, stages=[[8, 0, 1]])
    with pytest.raises(ConfigError):
        create_space("chain", (1, 8, 8), 10, bogus=1)
    with pytest.raises(Exception, match="chain"):
        create_space("resnet", (1, 8, 8), 10)
