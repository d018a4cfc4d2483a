"""The loss phase's two large tensors placed in the CUDA graphs' pool (offloaded checkpointing with
graphed layers).

With graphed layers (layer_graphs) the graphs' pool holds one layer's working set for the whole step,
reserved though no tensor holds it between replays, and the step's memory peaks in the loss phase,
where the LM head's GPU copy and one logits chunk sit beside the pool (llama-1b on an H100,
2026-12-07: 2.00 GiB in all, 0.27x stock; pool 0.57 GiB, head 0.49, chunk 0.125). No graph runs
between the last forward replay and the first backward replay, so those two tensors can live in the
pool: `lend_graph_pool_to_loss(model)`. Its price is time: the head's copy can no longer overlap the
decoder, whose forward graphs use that memory until they are done (about 18 ms a step at llama-1b
when session 7 measured it). Measured on an H100 (2026-12-07, llama-1b QLoRA offloaded, batch 2 x
2048): 58,772 tokens/s at 2.00 GiB lent nowhere, 52,231 at 1.45 GiB lent, and eager 1.44 GiB. With
the lend, the graphs cost offloaded checkpointing (the mode picked for its memory) no memory, so it is
on wherever that mode runs graphed; `TUITUNE_GRAPH_LEND=0` turns it off in the bench and the trainer.
"""

from __future__ import annotations

_SLACK = 4 << 20  # bytes: the allocator rounds each block up



def lend_graph_pool_to_loss(model) -> str:
    """Have the fused loss allocate the offloaded LM head's GPU copy and its logits chunk in the layer
    graphs' pool; returns ``"lent: ..."`` or ``"not lent: <why>"``. Call it after
    ``enable_checkpointing(..., cuda_graphs=True)`` and ``offload_output_head``, before the first step."""
    from tuitune.kernels.ops.fused_linear_cross_entropy import logits_buffer_shape
    from tuitune.trainer.activation_checkpointing import layer_graphs
    from tuitune.trainer.head_offload import head_stash
    from tuitune.trainer.layer_graphs import ModelGraphs
    from tuitune.trainer.fused_loss_mark import fused_loss_installed
    from tuitune.trainer.patching import LOSS_ALLOCATOR

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    graphs = layer_graphs(model)
    if not isinstance(graphs, ModelGraphs):
        return "not lent: the layers are not graphed with recomputation"
    if not fused_loss_installed(base):
        return "not lent: the loss is not tuitune's fused loss"
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    stash = head_stash(head)
    if stash is None:
        return "not lent: the LM head is not offloaded (its copy is what the pool would hold)"
    table = stash.table
    rows, vocab = logits_buffer_shape(1 << 40, table)
    nbytes = table.numel() * table.element_size() + rows * vocab * table.element_size() + _SLACK
    why = graphs.lend_to_loss(nbytes)
    if why is not None:
        return f"not lent: {why}"
    stash.allocate = graphs.lent_empty
    stash.starts_at_loss = True
    base.__dict__[LOSS_ALLOCATOR] = graphs.lent_empty
    return f"lent: the LM head's copy and the logits chunk ({nbytes / 1024**3:.2f} GiB) live in the graphs' pool"
