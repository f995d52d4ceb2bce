"""The layer graph of a Relax module, and the offload plan derived from it."""

from collections import Counter

import networkx as nx
import pytest
import torch
import torch.nn as nn

from explorer.accel.compile import layer_graph, offload_plan, program_order
from explorer.deploy.export import export_onnx
from explorer.deploy.tvm_build import import_relax, load_onnx
from explorer.space import create_space
from explorer.space.quant import QuantState


def _module(net, input_shape, path):
    export_onnx(net.eval(), input_shape, path)
    return import_relax(load_onnx(path))


@pytest.fixture(scope="module")
def chain_mod(tmp_path_factory):
    space = create_space("chain", (1, 12, 12), 5, stem_channels=8, stages=[[8, 2, 2], [16, 1, 1]])
    g = {k: v[0] for k, v in space.choices().items()}
    torch.manual_seed(0)
    net = space.build_network(g, QuantState.fixed(None, None))
    return _module(net, space.input_shape, tmp_path_factory.mktemp("lg") / "chain.onnx")


class _Odd(nn.Module):
    """An asymmetric conv, a grouped conv and a 1x1 conv on two branches, then a classifier."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=(1, 0))
        self.g = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.p = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = torch.relu(self.a(x))
        return self.fc((self.g(y) + self.p(y)).mean(dim=(2, 3)))


def _check_plan_equals_graph(mod):
    g = layer_graph(mod)
    layers, host, notes = offload_plan(mod)
    assert nx.is_directed_acyclic_graph(g)
    order = program_order(g)
    assert order == sorted(g.nodes)  # topological order is program order
    assert all(u < v for u, v in g.edges)
    gemm = [n for n in order if g.nodes[n]["placement"] == "gemm"]
    assert [g.nodes[n]["layer"] for n in gemm] == layers
    assert Counter(g.nodes[n]["host_op"] for n in order if g.nodes[n]["host_op"]) == host
    assert [g.nodes[n]["note"] for n in order if g.nodes[n]["note"]] == notes
    return g, layers


def test_chain_layer_graph_is_a_dag_whose_conv_nodes_are_the_offloaded_layers(chain_mod):
    g, layers = _check_plan_equals_graph(chain_mod)
    convs = [n for n in program_order(g) if g.nodes[n]["op"] == "relax.nn.conv2d"]
    assert [g.nodes[n]["layer"].name for n in convs] == [L.name for L in layers if L.name.startswith("conv")]
    assert layers[-1].name.startswith("dense")
    # every offloaded layer reads the network's input through the graph
    (src,) = [n for n in g if g.in_degree(n) == 0 and g.nodes[n]["call"] is None]
    assert all(nx.has_path(g, src, n) for n in convs)
    for n in convs:  # the conv's data operand is produced by one of its predecessors
        data = g.nodes[n]["call"].args[0]
        assert any(g.nodes[p]["var"].same_as(data) for p in g.predecessors(n))


def test_host_convs_are_annotated_like_the_plan(tmp_path):
    torch.manual_seed(0)
    mod = _module(_Odd(), (3, 10, 10), tmp_path / "odd.onnx")
    g, layers = _check_plan_equals_graph(mod)
    placed = {g.nodes[n]["host_op"]: g.nodes[n] for n in g if g.nodes[n]["op"] == "relax.nn.conv2d"
              and g.nodes[n]["placement"] == "host"}
    assert set(placed) == {"relax.nn.conv2d (asymmetric)", "relax.nn.conv2d (grouped)"}
    assert "depthwise" in placed["relax.nn.conv2d (grouped)"]["note"]
    assert [L.name for L in layers] == ["conv0", "dense1"]
    # the grouped and the 1x1 conv read the same activation: two consumers of one producer
    conv_nodes = [n for n in g if g.nodes[n]["op"] == "relax.nn.conv2d"]
    assert len({p for n in conv_nodes[1:] for p in g.predecessors(n)}) == 1
