"""Checkpointed training gives the stock losses and gradients and keeps far fewer activations."""

import types

import pytest
import torch

from tests.kernels.kernel_env import DEVICE, ON_GPU
from tests.kernels.tiny_models import adamw_losses, batch, build_base, with_lora
from tests.kernels.tolerances import check_model
from tuitune.trainer.activation_checkpointing import enable_checkpointing
from tuitune.trainer.patching import apply_kernels


def _run(model, inputs):
    model.zero_grad(set_to_none=True)
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**inputs).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads, sum(saved)


def _model(kernels: bool, device):
    model = with_lora(build_base("llama", num_hidden_layers=3), "llama").to(device)
    if kernels:
        apply_kernels(model, allow_cpu=True)
    return model.train()


@pytest.mark.parametrize("kernels", [False, True], ids=["stock", "kernels"])
def test_checkpointing_matches_no_checkpointing(kernels):
    device = "cuda" if ON_GPU else "cpu"
    inputs = batch(device=device, seq=16)
    reference = _model(kernels, device)
    assert enable_checkpointing(reference, "none") == "none"
    loss0, grads0, saved0 = _run(reference, inputs)
    for mode, keep in [("standard", None), ("offloaded", None), ("standard", True)]:
        model = _model(kernels, device)
        applied = enable_checkpointing(model, mode, keep_block_outputs=keep)
        assert applied == (mode if ON_GPU or mode != "offloaded" else "standard")
        loss, grads, saved = _run(model, inputs)
        check_model(f"checkpointing.{mode}.loss", loss, loss0, torch.float32)
        for name in grads0:
            check_model(f"checkpointing.{mode}.lora_grad", grads[name], grads0[name], torch.float32)
        assert saved < saved0 / 2, f"{mode}: saved {saved} bytes vs {saved0} without checkpointing"


@pytest.mark.parametrize("keep_attention,keep_qkv", [("1", "1"), ("0", "1"), ("1", "0"), ("cudnn", "1")])
def test_kept_block_outputs_are_replayed_by_the_recompute(monkeypatch, keep_attention, keep_qkv):
    """With block outputs kept, each layer's recompute gets its q, k and v (no base GEMM), its attention
    output (no attention forward) and its o_proj output (no base GEMM) back, and the gradients stay
    those of plain checkpointing (the attention output only with TUITUNE_KEEP_ATTENTION=1; q, k and v
    unless TUITUNE_KEEP_QKV=0)."""
    import tuitune.trainer.activation_checkpointing as ac

    monkeypatch.setenv("TUITUNE_KEEP_ATTENTION", keep_attention)
    monkeypatch.setenv("TUITUNE_KEEP_QKV", keep_qkv)
    replayed = []
    original = ac.replayed_block_output

    def spy(tag):
        t = original(tag)
        if t is not None:
            replayed.append(tag)
        return t

    monkeypatch.setattr(ac, "replayed_block_output", spy)
    device = "cuda" if ON_GPU else "cpu"
    dtype = torch.bfloat16 if ON_GPU else torch.float32  # flash attention on a GPU computes in 16 bits
    inputs = batch(seq=16, device=device)
    inputs["attention_mask"] = torch.ones_like(inputs["attention_mask"])  # no mask: causal flash attention
    runs = {}
    for keep in (False, True):
        model = with_lora(build_base("llama", dtype=dtype, num_hidden_layers=3), "llama").to(device)
        apply_kernels(model, allow_cpu=True)
        model.train()
        # On a GPU the outputs go through the offloader (several tensors per layer, pinned buffers).
        mode = "offloaded" if ON_GPU and keep else "standard"
        assert enable_checkpointing(model, mode, keep_block_outputs=keep) == mode
        replayed.clear()
        runs[keep] = _run(model, inputs)
    expected = ["qkv"] * (keep_qkv == "1") + ["attention"] * (keep_attention != "0") + ["o_proj"]
    assert replayed == expected * 3
    check_model("checkpointing.replayed.loss", runs[True][0], runs[False][0], dtype)
    for name in runs[False][1]:
        check_model("checkpointing.replayed.lora_grad", runs[True][1][name], runs[False][1][name], dtype)


def test_checkpointing_can_be_switched_off_again_and_eval_is_untouched():
    model = _model(False, "cpu")
    inputs = batch()
    enable_checkpointing(model, "standard")
    enable_checkpointing(model, "none")
    layer = model.get_base_model().model.layers[0]
    assert "forward" not in layer.__dict__
    _, _, saved_none = _run(model, inputs)
    enable_checkpointing(model, "standard")
    model.eval()
    with torch.no_grad():
        assert model(**inputs).loss.isfinite()


def test_checkpointing_turns_off_transformers_own():
    model = _model(False, "cpu")
    base = model.get_base_model()
    renamed = hasattr(base, "activation_checkpointing_enable")  # newer transformers' name
    (base.activation_checkpointing_enable if renamed else base.gradient_checkpointing_enable)()
    assert base.is_activation_checkpointing if renamed else base.is_gradient_checkpointing
    enable_checkpointing(model, "standard")
    assert not (base.is_activation_checkpointing if renamed else base.is_gradient_checkpointing)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="none, standard, offloaded"):
        enable_checkpointing(_model(False, "cpu"), "aggressive")


LENGTHS = (512, 256, 448, 512, 320, 384)  # batches of varying length, as unpacked chat data gives


def _train_losses(mode: str, offload_embeddings: bool, buffers: list | None = None, *, offload_head: bool = False,
                  tied: bool = False) -> list[float]:
    """Losses of a few AdamW steps of a patched bf16 model large enough that the GPU is still busy
    when the next layer's input is offloaded or fetched (a stream race shows as diverging losses).
    The batches vary in length, so offloading reuses its pinned buffers for other shapes; `buffers`
    collects how many it holds after each step."""
    from tuitune.trainer.activation_checkpointing import pinned_buffers
    from tuitune.trainer.embedding_offload import offload_input_embeddings

    model = with_lora(build_base("llama", dtype=torch.bfloat16, num_hidden_layers=4, hidden_size=512,
                                 intermediate_size=1536, num_attention_heads=8, num_key_value_heads=4,
                                 vocab_size=2048, max_position_embeddings=1024, tie_word_embeddings=tied),
                      "llama").to("cuda").train()
    apply_kernels(model)
    assert enable_checkpointing(model, mode) == mode
    if offload_embeddings:
        assert offload_input_embeddings(model) == ("kept on the GPU: the LM head shares the table" if tied
                                                   else "offloaded")
        assert model.get_base_model().device.type == "cuda"
    if offload_head:
        from tuitune.trainer.head_offload import offload_output_head

        assert offload_output_head(model) == ("offloaded with the tied input embeddings" if tied else "offloaded")
        assert model.get_base_model().lm_head.weight.numel() == 0
    after = None if buffers is None else (lambda: buffers.append(pinned_buffers(model)))
    return [float(loss) for loss in adamw_losses(model, LENGTHS, rows=4, vocab=2048, lr=1e-3, after_step=after)]


@pytest.mark.skipif(not ON_GPU, reason="offloading needs a CUDA device")
def test_offloaded_training_matches_standard_over_several_steps():
    standard = _train_losses("standard", offload_embeddings=False)
    buffers = []
    offloaded = _train_losses("offloaded", offload_embeddings=True, buffers=buffers)
    for a, b in zip(offloaded, standard):
        check_model("checkpointing.offloaded.steps", torch.tensor(a), torch.tensor(b), torch.bfloat16)
    # The first (longest) batch made every pinned buffer the later, shorter or equal ones need.
    assert buffers[0] > 0 and buffers[-1] == buffers[0], buffers


def test_offload_buffers_round_up_by_at_most_an_eighth():
    from tuitune.trainer.activation_checkpointing import _buffer_bytes

    for n in (1, 5 << 20, (5 << 20) + 1, 123_456_789, 1 << 30, (1 << 30) + 1):
        size = _buffer_bytes(n)
        assert size >= max(n, 1 << 20) and size <= max(n, 1 << 20) * 1.125 + 1
    assert _buffer_bytes((1 << 30) + 1) == (1 << 30) + (1 << 27)


def test_embedding_offload_explains_why_it_keeps_a_table():
    from tuitune.trainer.embedding_offload import offload_input_embeddings

    model = with_lora(build_base("llama"), "llama")
    assert offload_input_embeddings(model) == "kept on the GPU: the table is on the cpu"


def test_no_device_view_of_a_table_without_a_cuda_device_or_pinned_memory():
    from tuitune.trainer.embedding_offload import device_view

    table = torch.zeros(4, 3, dtype=torch.bfloat16)
    assert device_view(table, torch.device("cpu")) is None
    assert device_view(table, torch.device("cuda")) is None  # not pinned: no PCIe reads from pageable memory


@pytest.mark.skipif(not ON_GPU, reason="offloading needs a CUDA device")
@pytest.mark.parametrize("gather", ["host", "device"])
def test_an_offloaded_table_gives_the_rows_it_held_gathered_on_either_side(monkeypatch, gather):
    from tuitune.trainer.embedding_offload import offload_input_embeddings

    monkeypatch.setenv("TUITUNE_EMBED_GATHER", gather)
    emb = torch.nn.Embedding(3001, 136, dtype=torch.bfloat16).to("cuda").requires_grad_(False)
    want = emb.weight.detach().clone()
    model = types.SimpleNamespace(get_input_embeddings=lambda: emb)
    assert offload_input_embeddings(model) == "offloaded"
    assert (emb.__dict__["_tuitune_device_view"] is not None) == (gather == "device")
    for shape in ((2, 77), (1, 5), (3, 1000)):
        ids = torch.randint(0, 3001, shape, device="cuda")
        ids[0, 0] = 3000
        got = emb(ids)
        assert got.device.type == "cuda" and got.shape == (*shape, 136)
        torch.testing.assert_close(got, want[ids], rtol=0, atol=0)


@pytest.mark.skipif(not ON_GPU, reason="offloading needs a CUDA device")
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_an_offloaded_lm_head_trains_like_one_on_the_gpu(tied):
    standard = _train_losses("standard", offload_embeddings=False, tied=tied)
    offloaded = _train_losses("offloaded", offload_embeddings=True, offload_head=True, tied=tied)
    for a, b in zip(offloaded, standard):
        check_model("checkpointing.offloaded.steps", torch.tensor(a), torch.tensor(b), torch.bfloat16)


@pytest.mark.skipif(not ON_GPU, reason="offloading needs a CUDA device")
def test_an_offloaded_lm_head_leaves_the_gpu_for_the_backward_pass_and_still_serves_other_callers():
    from tuitune.trainer.head_offload import offload_output_head

    model = with_lora(build_base("llama", dtype=torch.bfloat16, num_hidden_layers=2, hidden_size=256,
                                 intermediate_size=512, num_attention_heads=4, num_key_value_heads=2,
                                 vocab_size=32768, max_position_embeddings=256, tie_word_embeddings=False),
                      "llama").to("cuda").train()
    apply_kernels(model)
    enable_checkpointing(model, "offloaded")
    head = model.get_base_model().lm_head
    table = head.weight.detach().clone()
    before = torch.cuda.memory_allocated()
    assert offload_output_head(model) == "offloaded"
    assert offload_output_head(model) == "already offloaded"
    assert before - torch.cuda.memory_allocated() >= table.numel() * table.element_size()
    seen = []
    hook = model.get_base_model().model.layers[0].register_full_backward_hook(
        lambda *_: seen.append(torch.cuda.memory_allocated()))
    ids = torch.randint(0, 32768, (2, 128), device="cuda")
    model(input_ids=ids, labels=ids).loss.backward()
    hook.remove()
    assert seen and seen[0] < before  # the 16 MiB head is not on the GPU during the backward pass
    hidden = torch.randn(3, 256, device="cuda", dtype=torch.bfloat16)
    torch.testing.assert_close(head(hidden), hidden @ table.t())


@pytest.mark.parametrize("at_loss", [False, True], ids=["first-layer", "lent-to-the-loss"])
def test_the_head_copy_starts_after_the_input_rows_as_the_first_layer_begins(at_loss):
    """Host-to-device copies share a copy engine: started before the embedding lookup, the head's copy
    would hold the input rows' copy (and the mask's host read that waits for it) back, GPU idle. A copy
    whose memory the graphs' pool lends (loss_in_graph_pool) starts only when the loss takes it."""
    from tuitune.trainer.head_offload import _MARK, start_with_first_layer

    model = _model(True, DEVICE)
    base = model.get_base_model()
    order = []

    class Stash:
        starts_with_first_layer = False
        starts_at_loss = at_loss

        def start(self):
            order.append("head copy")

        def take(self):
            order.append("loss")
            return base.lm_head.weight

    stash = Stash()
    base.lm_head.__dict__[_MARK] = stash
    start_with_first_layer(base, stash)
    assert stash.starts_with_first_layer
    base.model.embed_tokens.register_forward_hook(lambda *_: order.append("input rows"))
    for i, layer in enumerate(base.model.layers):
        layer.register_forward_pre_hook(lambda *_, i=i: order.append(f"layer {i}"))
    enable_checkpointing(model, "standard")
    ids = torch.randint(0, 320, (2, 12), device=DEVICE)
    model(input_ids=ids, labels=ids).loss.backward()  # the recompute does not copy the head again
    head_copy = [] if at_loss else ["head copy"]  # take() starts a lent copy (this stand-in's take does not)
    assert order == ["input rows", *head_copy, "layer 0", "layer 1", "layer 2", "loss"]


def _patched_then_on_the_cpu(kernels: bool = True):
    """A model patched where the kernels run (the GPU, or the CPU under the interpreter), then on the CPU:
    on a GPU machine a CPU model cannot be patched, as its kernels would not be interpreted."""
    return _model(kernels, DEVICE).to("cpu")


def test_an_lm_head_on_the_cpu_stays_where_it_is():
    from tuitune.trainer.head_offload import offload_output_head

    assert offload_output_head(_patched_then_on_the_cpu()) == "kept on the GPU: the head is on the cpu"


def test_an_lm_head_the_backward_pass_needs_stays_on_the_gpu():
    from tuitune.trainer.head_offload import offload_output_head

    def head_of(model):
        return model.get_base_model().lm_head

    trained = _patched_then_on_the_cpu()
    head_of(trained).weight.requires_grad_(True)
    assert offload_output_head(trained) == "kept on the GPU: the head is trained"
    biased = _patched_then_on_the_cpu()
    head_of(biased).bias = torch.nn.Parameter(torch.zeros(head_of(biased).out_features), requires_grad=False)
    assert offload_output_head(biased) == "kept on the GPU: the head has a bias"
    stock_loss = _patched_then_on_the_cpu(kernels=False)
    assert offload_output_head(stock_loss).startswith("kept on the GPU: the loss is not tuitune's fused loss")
    for model in (trained, biased, stock_loss):
        assert head_of(model).weight.numel() > 0 and "_tuitune_head_stash" not in head_of(model).__dict__


def test_layers_keep_block_outputs_only_within_the_host_budget_and_the_entry_limit():
    from tuitune.trainer.activation_checkpointing import _buffer_bytes, _Offloader

    offloader = _Offloader.__new__(_Offloader)  # the bookkeeping only: no CUDA stream needed
    hidden = torch.empty(4, 1 << 18, dtype=torch.bfloat16)  # 2 MiB
    entry = _buffer_bytes(int(hidden.nbytes * 3.1))
    offloader.free_buffers, offloader.pinned_bytes, offloader.host_budget = [], 0, 2 * entry
    assert offloader.room_for(hidden, 2.1)
    offloader.pinned_bytes = entry
    assert offloader.room_for(hidden, 2.1)
    offloader.pinned_bytes = 2 * entry
    assert not offloader.room_for(hidden, 2.1)
    offloader.free_buffers = [torch.empty(entry, dtype=torch.uint8)]  # last step's buffer, free again
    assert offloader.room_for(hidden, 2.1)
    long_context = torch.empty(1, 98304, 4096, dtype=torch.bfloat16, device="meta")  # 0.8 GB a layer input
    offloader.host_budget = float("inf")
    assert not offloader.room_for(long_context, 2.5), "GiBs of GPU memory for a few percent of the step"
    assert offloader.room_for(long_context[:, :16384], 2.5)  # llama-8b at 16,384 tokens: 470 MB an entry


def test_an_offload_entry_takes_no_room_for_undefined_tensors():
    """PyTorch's flash attention returns None for a dense batch's sequence offsets; they ride along."""
    from tuitune.trainer.activation_checkpointing import _ALIGN, _offsets

    a, b = torch.empty(10, dtype=torch.bfloat16), torch.empty(3, dtype=torch.float32)
    assert _offsets([a, None, b, None]) == ([0, _ALIGN, _ALIGN, 2 * _ALIGN], 2 * _ALIGN)


def test_a_replay_the_attention_backward_refuses_still_trains_and_stops_keeping(monkeypatch, caplog):
    import tuitune.trainer.kept_attention as ka

    def refuse(*args, **kwargs):
        raise RuntimeError("no kernel for these inputs")

    monkeypatch.setattr(ka, "_operator_backward", refuse)
    monkeypatch.setattr(ka, "_REFUSED", [])
    monkeypatch.setenv("TUITUNE_KEEP_ATTENTION", "1")
    device = "cuda" if ON_GPU else "cpu"
    dtype = torch.bfloat16 if ON_GPU else torch.float32  # where the flash operator takes the layer
    inputs = batch(seq=16, device=device)
    inputs["attention_mask"] = torch.ones_like(inputs["attention_mask"])
    runs = {}
    for keep in (False, True):
        model = with_lora(build_base("llama", dtype=dtype, num_hidden_layers=3), "llama").to(device)
        apply_kernels(model, allow_cpu=True)
        enable_checkpointing(model.train(), "standard", keep_block_outputs=keep)
        runs[keep] = _run(model, inputs)
    assert ka._REFUSED and "no kernel for these inputs" in ka._REFUSED[0]
    said = [r.getMessage() for r in caplog.records if r.name == "tuitune"]
    assert len(said) == 1 and "refused a kept attention (RuntimeError: no kernel for these inputs)" in said[0]
    for name in runs[False][1]:
        check_model("checkpointing.replayed.lora_grad", runs[True][1][name], runs[False][1][name], dtype)
    q = torch.randn(1, 4, 16, 8)
    assert not ka.eligible(model.get_base_model().model.layers[0].self_attn, q, q, None, 0.0, {})


def test_4bit_q_k_and_v_are_kept_as_the_one_buffer_they_were_projected_into():
    """4-bit q, k and v project into column blocks of one buffer in a first pass (no autograd): that
    buffer is kept (one offload copy, no gather), and the recompute's replay of it gives the
    gradients of q, k and v computed again."""
    from tests.kernels.test_lora import _proj
    from tuitune.trainer import activation_checkpointing as ac
    from tuitune.trainer.kept_attention import query_key_value

    dtype = torch.bfloat16 if ON_GPU else torch.float32
    ps = [_proj(o, 64, dtype, DEVICE, "nf4", 8, torch.float32)[0] for o in (64, 16, 16)]
    x = torch.randn(2, 5, 64, device=DEVICE, dtype=dtype)
    ac._STATE.kept = kept = []
    try:
        with torch.no_grad():
            first = query_key_value(x, *ps)
    finally:
        ac._STATE.kept = None
    [(tag, (stacked,))] = kept
    assert tag == "qkv" and stacked.shape == (10, 96) and stacked.is_contiguous()
    grads = {}
    for replay in (None, kept):
        for p in ps:
            p.lora_a.grad = p.lora_b.grad = None
        xg = x.clone().requires_grad_()
        ac._enter_recompute(list(replay) if replay else None)
        try:
            outs = query_key_value(xg, *ps)
        finally:
            ac._leave_recompute()
        for out, want in zip(outs, first):
            assert torch.equal(out, want)
        torch.autograd.backward([o * 1.0 for o in outs], [torch.ones_like(o) for o in outs])
        grads[replay is None] = [xg.grad] + [g for p in ps for g in (p.lora_a.grad, p.lora_b.grad)]
    for replayed, recomputed in zip(grads[False], grads[True]):
        check_model("checkpointing.replayed.lora_grad", replayed, recomputed, dtype)


def test_grouped_keys_repeated_for_cudnn_give_their_gradients_back_summed():
    """cuDNN's operator takes keys and values with the query's heads; the kept attention repeats grouped
    ones and sums the gradients back, which must equal autograd through the repeat."""
    from tuitune.trainer.kept_attention import _as_many_heads, _summed_over_groups

    query, key = torch.randn(2, 8, 5, 4), torch.randn(2, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    repeated = _as_many_heads(query, key)
    assert repeated.shape == (2, 8, 5, 4) and torch.equal(repeated[:, 3], key[:, 0].detach())
    grad = torch.randn(2, 8, 5, 4, dtype=torch.float64)
    repeated.backward(grad)
    assert torch.allclose(_summed_over_groups(grad, key), key.grad)
    assert _as_many_heads(query, query) is query and _summed_over_groups(grad, grad) is grad
