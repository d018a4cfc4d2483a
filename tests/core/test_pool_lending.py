"""The switch for offloaded checkpointing's loss borrowing the layer graphs' pool (tuitune.pool_lending):
on by default, off with TUITUNE_GRAPH_LEND=0. The lent run itself is a GPU test in
tests/kernels/test_layer_graphs.py, next to the CPU test of a model with no graphed pool to borrow."""

from tuitune.pool_lending import loss_borrows_the_pool


def test_lending_is_on_unless_turned_off(monkeypatch):
    monkeypatch.delenv("TUITUNE_GRAPH_LEND", raising=False)
    assert loss_borrows_the_pool()
    monkeypatch.setenv("TUITUNE_GRAPH_LEND", "0")
    assert not loss_borrows_the_pool()
    monkeypatch.setenv("TUITUNE_GRAPH_LEND", "1")
    assert loss_borrows_the_pool()
