"""Contract tests over every registered op: forward, backward, no NaN, every parameter gets a gradient."""

import pytest
import torch

from explorer.space.ops import ACTIVATIONS, OPS
from explorer.space.quant import QuantState


def _cases():
    for name in OPS.names():
        for cin, cout, stride in ((8, 8, 1), (8, 16, 2)):
            if OPS.create(name).legal(cin, cout, stride, residual=(cin == cout and stride == 1)):
                yield name, cin, cout, stride


@pytest.mark.parametrize("name,cin,cout,stride", list(_cases()))
@pytest.mark.parametrize("bits", [None, 8, 4])
def test_op_contract(name, cin, cout, stride, bits):
    torch.manual_seed(0)
    qs = QuantState.fixed(bits, bits)
    spec = OPS.create(name)
    op = spec.build(cin, cout, stride, qs)
    x = torch.randn(2, cin, 9, 9, requires_grad=True)
    y = op(x)
    assert y.shape == (2, cout, 5 if stride == 2 else 9, 5 if stride == 2 else 9)
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward() if y.requires_grad else None
    for n, p in op.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: {n} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name}: {n} gradient is zero"
    # every op with parameters has work for the hardware; workloads have consistent shapes
    wl = spec.workloads(cin, cout, 9, 9, stride)
    if list(op.parameters()):
        assert wl
    for w in wl:
        assert w.hout in (5, 9) and w.kind in ("conv", "alu")


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_activation_contract(act):
    m = ACTIVATIONS[act][0]()
    x = torch.randn(10, requires_grad=True)
    m(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert ACTIVATIONS[act][1] >= 1


def test_unknown_op_lists_valid():
    with pytest.raises(Exception, match="conv3x3"):
        OPS.create("conv7x7")


@pytest.mark.parametrize("stride", [1, 2])
def test_max_pool_without_gradient_is_the_same_pooling(stride):
    """The cheaper kernels the max pool uses where no gradient is taken give max_pool2d's values
    exactly (ties, negative values, odd sizes); with a gradient it is max_pool2d itself."""
    import torch.nn.functional as F

    from explorer.space.ops import MaxPool3x3

    torch.manual_seed(0)
    x = (torch.randn(3, 5, 9, 7) * 3).round()  # many ties, and negative values next to the -inf padding
    pool = MaxPool3x3(stride)
    with torch.no_grad():
        assert torch.equal(pool(x), F.max_pool2d(x, 3, stride, 1))
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn_like(F.max_pool2d(x, 3, stride, 1))
    (pool(a) * g).sum().backward()
    (F.max_pool2d(b, 3, stride, 1) * g).sum().backward()
    assert torch.equal(a.grad, b.grad)  # the same tie-breaking: the search's trajectory is unchanged
