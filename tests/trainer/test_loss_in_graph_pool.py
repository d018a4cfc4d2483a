"""When the loss borrows the layer graphs' pool (tuitune.trainer.loss_in_graph_pool): on by default,
off with TUITUNE_GRAPH_LEND=0, and never where there is no graphed pool to borrow. The lent run itself
(losses and adapters against eager layers) is a GPU test in tests/kernels/test_layer_graphs.py."""

import torch

from tuitune.trainer import loss_in_graph_pool


def test_lending_is_on_unless_turned_off(monkeypatch):
    monkeypatch.delenv("TUITUNE_GRAPH_LEND", raising=False)
    assert loss_in_graph_pool.wanted()
    monkeypatch.setenv("TUITUNE_GRAPH_LEND", "0")
    assert not loss_in_graph_pool.wanted()
    monkeypatch.setenv("TUITUNE_GRAPH_LEND", "1")
    assert loss_in_graph_pool.wanted()


def test_a_model_without_graphed_layers_lends_nothing():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    why = loss_in_graph_pool.lend_graph_pool_to_loss(model)
    assert why == "not lent: the layers are not graphed with recomputation"
