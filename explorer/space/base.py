"""Network search spaces: the interface, the supernet base class and cost slots."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod  # noqa: F401

import numpy as np
import torch
import torch.nn as nn

from ..errors import ConfigError
from ..registry import Registry
from ..slots import Slot, Workload, full_table, onehot_genotype, slot_workloads  # noqa: F401  (re-exported)

__all__ = ["Slot", "SearchSpace", "SuperNet", "SPACES", "RELAXATIONS", "relaxed_probs", "uniform_onehot", "entropy"]

SPACES: Registry = Registry("search space")


#: how a supernet's choices are relaxed: "softmax" (every option computed, weighted: DARTS),
#: "gumbel" (Gumbel-softmax weights, every option computed), "sample" (one option per choice drawn
#: by Gumbel-max, its weight 1 in the forward pass and the Gumbel-softmax gradient in the backward
#: pass: GDAS; step time and memory do not grow with the number of options)
RELAXATIONS = ("softmax", "gumbel", "sample")


def _gumbel(shape, generator) -> torch.Tensor:
    u = torch.rand(shape, generator=generator).clamp(1e-9, 1 - 1e-9)
    return -torch.log(-torch.log(u))


def relaxed_probs(logits: torch.Tensor, mask: torch.Tensor, relax: str, tau: float, generator=None) -> torch.Tensor:
    """Option weights over the unmasked options, relaxed as :data:`RELAXATIONS` says.

    ``"sample"`` returns a one-hot vector whose gradient is the Gumbel-softmax's (straight-through):
    the options not drawn have weight exactly 0, so :func:`mix` does not compute them.
    """
    logits = logits.masked_fill(~mask, float("-inf"))
    if relax == "gumbel":
        return torch.softmax((logits + _gumbel(logits.shape, generator)) / tau, dim=-1)
    if relax == "sample":
        soft = torch.softmax((logits + _gumbel(logits.shape, generator)) / tau, dim=-1)
        hard = torch.zeros_like(soft).scatter_(-1, soft.detach().argmax(-1, keepdim=True), 1.0)
        return hard - soft.detach() + soft
    return torch.softmax(logits / tau, dim=-1)


def uniform_onehot(mask: torch.Tensor, generator=None) -> torch.Tensor:
    """One unmasked option drawn uniformly, as a constant one-hot vector (warm-up path sampling)."""
    idx = torch.nonzero(mask).flatten()
    pick = idx[int(torch.randint(len(idx), (1,), generator=generator))]
    return torch.zeros(len(mask)).scatter_(0, pick.view(1), 1.0)


def entropy(p: torch.Tensor) -> float:
    """Entropy in nats, ignoring zero-probability (pruned) options."""
    p = p.detach()
    nz = p[p > 0]
    return float(-(nz * nz.log()).sum())


class SuperNet(nn.Module):
    """Base of every supernet: architecture logits, pruning masks, relaxation and derivation.

    Lifecycle: build with the space's choices; each step call :meth:`probs` once and pass the result
    to ``forward(x, probs)``; between search stages call :meth:`prune`; at the end :meth:`derive`.
    Architecture logits are registered parameters (``alpha.<choice>``), so checkpoints hold them.
    """

    def __init__(self, choices: dict[str, list[str]]):
        super().__init__()
        self.choice_options = {k: list(v) for k, v in choices.items()}
        self.alpha = nn.ParameterDict({k: nn.Parameter(torch.zeros(len(v))) for k, v in choices.items()})
        for k, v in choices.items():
            self.register_buffer(f"mask_{k}", torch.ones(len(v), dtype=torch.bool))

    def mask(self, name: str) -> torch.Tensor:
        return getattr(self, f"mask_{name}")

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alpha.values())

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("alpha.")]

    def probs(self, relax: str = "softmax", tau: float = 1.0, generator=None) -> dict[str, torch.Tensor]:
        return {k: relaxed_probs(a, self.mask(k), relax, tau, generator) for k, a in self.alpha.items()}

    def sample_uniform(self, generator=None) -> dict[str, torch.Tensor]:
        """One unpruned option per choice, drawn uniformly, as constant one-hot weights: a random
        path through the supernet (how warm-up trains the shared weights without favouring any op)."""
        return {k: uniform_onehot(self.mask(k), generator) for k in self.alpha}

    def onehot(self, genotype: dict[str, str]) -> dict[str, torch.Tensor]:
        """Constant one-hot probabilities selecting ``genotype`` (evaluates a sub-network)."""
        out = {}
        for k, opts in self.choice_options.items():
            t = torch.zeros(len(opts))
            t[opts.index(genotype[k])] = 1.0
            out[k] = t
        return out

    def derive(self) -> dict[str, str]:
        """Argmax of each (unpruned) choice."""
        out = {}
        for k, a in self.alpha.items():
            logits = a.detach().masked_fill(~self.mask(k), float("-inf"))
            out[k] = self.choice_options[k][int(torch.argmax(logits))]
        return out

    @torch.no_grad()
    def prune(self, keep: int) -> dict[str, list[str]]:
        """Keep the ``keep`` strongest options of every choice; returns what was removed."""
        removed = {}
        for k, a in self.alpha.items():
            m = self.mask(k)
            if int(m.sum()) <= keep:
                continue
            logits = a.masked_fill(~m, float("-inf"))
            top = torch.topk(logits, keep).indices
            new = torch.zeros_like(m)
            new[top] = True
            removed[k] = [self.choice_options[k][i] for i in range(len(m)) if m[i] and not new[i]]
            m.copy_(new)
        return removed

    @torch.no_grad()
    def freeze(self, genotype: dict[str, str]) -> None:
        """Restrict every choice to ``genotype``'s option (network held fixed)."""
        for k, opts in self.choice_options.items():
            m = self.mask(k)
            m.zero_()
            m[opts.index(genotype[k])] = True

    def forward(self, x: torch.Tensor, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


def mix(ops: nn.ModuleList, p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Weighted sum of candidate ops. Options whose weight is exactly zero (pruned, frozen or one-hot)
    are not computed: their weight's gradient w.r.t. the logits is zero too, so nothing is lost."""
    out = None
    for op, w in zip(ops, p):
        if float(w.detach()) == 0.0:
            continue
        y = w * op(x)
        out = y if out is None else out + y
    return out


class SearchSpace(ABC):
    """A network search space for one input shape and class count.

    Subclasses declare their choices, build the supernet and standalone networks, and describe their
    hardware workloads as :class:`Slot` s. Genotypes are ``{choice name: option}`` dicts.
    """

    name: str = ""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int):
        self.input_shape = tuple(input_shape)
        self.num_classes = int(num_classes)

    @abstractmethod
    def choices(self) -> dict[str, list[str]]: ...

    @abstractmethod
    def build_supernet(self, qstate) -> SuperNet: ...

    @abstractmethod
    def build_network(self, genotype: dict[str, str], qstate) -> nn.Module: ...

    @abstractmethod
    def cost_slots(self) -> list[Slot]: ...

    def options(self) -> dict:
        """The space's construction options (for the run's resolved config)."""
        return {}

    def format_genotype(self, genotype: dict[str, str]) -> str:
        return ";".join(f"{k}={genotype[k]}" for k in self.choices())

    def parse_genotype(self, text: str) -> dict[str, str]:
        try:
            g = dict(part.split("=", 1) for part in text.strip().split(";") if part)
        except ValueError:
            raise ConfigError(f"malformed genotype {text!r}: expected 'choice=option;...'") from None
        self.validate_genotype(g)
        return g

    def validate_genotype(self, genotype: dict[str, str]) -> None:
        ch = self.choices()
        if set(genotype) != set(ch):
            raise ConfigError(
                f"genotype for space {self.name!r} must set exactly {sorted(ch)}; got {sorted(genotype)}"
            )
        for k, v in genotype.items():
            if v not in ch[k]:
                raise ConfigError(f"genotype: {k}={v!r} is not one of {ch[k]}")

    def connected(self, genotype: dict[str, str]) -> bool:
        """Whether the network's output depends on its input (a space whose ops can cut the graph,
        such as a cell of ``none`` edges, says when it does not)."""
        return True

    def connect(self, genotype: dict[str, str], prefs: dict[str, dict[str, float]]) -> dict[str, str]:
        """The genotype closest to ``genotype`` that is :meth:`connected`, giving up as little of the
        search's preference ``prefs[choice][option]`` (options at 0 are pruned, never used) as it can."""
        return dict(genotype)

    def random_genotype(self, rng: np.random.Generator) -> dict[str, str]:
        return {k: v[int(rng.integers(len(v)))] for k, v in self.choices().items()}

    def workloads(self, genotype: dict[str, str]) -> list[Workload]:
        """Workloads of one derived network (the slots evaluated at the genotype's options)."""
        return slot_workloads(self.cost_slots(), self.choices(), genotype)


def scaled(c: int, width: str) -> int:
    """Channels at a width multiplier option such as ``"0.75"``."""
    return max(1, int(math.ceil(c * float(width))))
