import torch

from explorer.space.quant import QuantState, fake_quant


def test_fake_quant_levels_and_ste():
    x = torch.linspace(-1, 1, 101, requires_grad=True)
    for bits in (8, 4):
        q = fake_quant(x, bits)
        assert len(torch.unique(q.detach())) <= 2**bits
        assert (q - x).abs().max() <= 1.0 / (2 ** (bits - 1) - 1) / 2 + 1e-6
    fake_quant(x, 4).sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))  # straight-through


def test_four_bits_lose_more_than_eight():
    torch.manual_seed(0)
    x = torch.randn(1000)
    assert (fake_quant(x, 4) - x).abs().mean() > 4 * (fake_quant(x, 8) - x).abs().mean()


def test_mixed_bits_gradient_reaches_probabilities():
    qs = QuantState((8, 4))
    logits = torch.zeros(2, requires_grad=True)
    x = torch.randn(50)
    y = qs.apply(x, torch.softmax(logits, 0), None)
    ((y - x) ** 2).sum().backward()  # reconstruction error prefers 8 bits
    assert logits.grad[0] < 0 < logits.grad[1]
