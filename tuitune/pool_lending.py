"""Whether offloaded checkpointing's loss phase borrows the layer graphs' pool for the LM head's GPU
copy and its logits chunk (tuitune.trainer.loss_in_graph_pool does it; the estimator counts it): yes
unless ``TUITUNE_GRAPH_LEND=0``. Torch-free."""

from __future__ import annotations

import os


def loss_borrows_the_pool() -> bool:
    return os.environ.get("TUITUNE_GRAPH_LEND", "1") != "0"
