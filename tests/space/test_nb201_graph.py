"""The NAS-Bench-201 cell as a graph: which edges are live."""

import itertools

import networkx as nx
import pytest
import torch

from explorer.space import create_space
from explorer.space.nb201 import EDGES, NB201_OPS, _FixedCell, cell_graph, edge_name, live_edges
from explorer.space.quant import QuantState


@pytest.fixture(scope="module")
def space():
    return create_space("nb201", (3, 8, 8), 10, channels=4)


def _live_by_hand(genotype):
    """Reference: forward and backward reachability by fixed point, edge by edge."""
    on = [(i, j) for j, i in EDGES if genotype[edge_name(j, i)] != "none"]
    fed, used = {0}, {3}
    for _ in range(4):
        fed |= {j for i, j in on if i in fed}
        used |= {i for i, j in on if j in used}
    return {edge_name(j, i) for i, j in on if i in fed and j in used}


def test_cell_graph_has_an_edge_per_non_none_op(space):
    g = space.parse_genotype("|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    cg = cell_graph(g)
    assert sorted(cg.nodes) == [0, 1, 2, 3] and nx.is_directed_acyclic_graph(cg)
    assert sorted(cg.edges) == [(0, 1), (0, 3), (1, 2), (2, 3)]
    assert cg.edges[1, 2] == {"name": "edge_2_1", "op": "avg_pool_3x3"}


def test_edges_into_a_node_that_reaches_the_output_only_through_none_are_dead(space):
    # node 2 feeds node 3 only through "none": the edges into node 2 compute a discarded value
    g = space.parse_genotype("|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|")
    assert live_edges(g) == {"edge_1_0", "edge_3_0", "edge_3_1"}
    # node 3 is reached only through "none": nothing is live
    g = space.parse_genotype("|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|none~1|none~2|")
    assert live_edges(g) == set()


def test_edges_fed_only_through_none_are_dead(space):
    g = space.parse_genotype("|none~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_3x3~2|")
    assert live_edges(g) == {"edge_2_0", "edge_3_2"}


def test_live_edges_match_hand_written_reachability_on_every_genotype():
    for ops in itertools.product(NB201_OPS, repeat=len(EDGES)):
        g = {edge_name(j, i): op for (j, i), op in zip(EDGES, ops)}
        assert live_edges(g) == _live_by_hand(g), g


@pytest.mark.parametrize(
    "text",
    [
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|none~1|none~2|",
        "|none~0|+|none~0|none~1|+|avg_pool_3x3~0|nor_conv_3x3~1|avg_pool_3x3~2|",
        "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|none~2|",
        "|none~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_3x3~2|",
    ],
)
def test_a_cell_output_depends_on_its_input_iff_an_edge_is_live(space, text):
    g = space.parse_genotype(text)
    torch.manual_seed(0)
    cell = _FixedCell(g, 4, QuantState.fixed(None, None)).eval()
    with torch.no_grad():
        a, b = cell(torch.randn(2, 4, 8, 8)), cell(torch.randn(2, 4, 8, 8))
    assert bool(live_edges(g)) == (not torch.equal(a, b))


def test_connect_opens_the_cheapest_path_and_keeps_connected_cells():
    from explorer.space.nb201 import EDGES, NB201Space, edge_name, live_edges

    sp = NB201Space((1, 8, 8), 10, channels=4)
    dead = {k: "none" for k in sp.choices()}
    assert not sp.connected(dead)
    prefs = {k: {"none": 0.6, "skip_connect": 0.1, "nor_conv_1x1": 0.1, "nor_conv_3x3": 0.1, "avg_pool_3x3": 0.1}
             for k in sp.choices()}
    prefs["edge_1_0"]["nor_conv_3x3"] = 0.55
    prefs["edge_3_1"]["nor_conv_1x1"] = 0.58
    g = sp.connect(dead, prefs)
    assert sp.connected(g) and live_edges(g) == {"edge_1_0", "edge_3_1"}
    assert g["edge_1_0"] == "nor_conv_3x3" and g["edge_3_1"] == "nor_conv_1x1"
    assert sum(v != "none" for v in g.values()) == 2  # nothing else changed
    # an edge pruned to `none` alone is never used to connect
    prefs2 = {k: dict(v) for k, v in prefs.items()}
    prefs2["edge_1_0"] = {"none": 1.0, "skip_connect": 0.0, "nor_conv_1x1": 0.0, "nor_conv_3x3": 0.0, "avg_pool_3x3": 0.0}
    g2 = sp.connect(dead, prefs2)
    assert sp.connected(g2) and g2["edge_1_0"] == "none"
    ok = {edge_name(j, i): "nor_conv_3x3" for j, i in EDGES}
    assert sp.connect(ok, prefs) == ok
