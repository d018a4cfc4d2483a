"""Packed rows: every example attends only to itself, so its loss and gradients are its unpacked ones.

TRL's padding-free collator concatenates examples, restarts positions at 0 and passes each example's
boundaries. The stock path masks across examples from the positions (transformers' block-diagonal
SDPA mask); tuitune's patched attention does the same, on a GPU through variable-length flash
attention (tuitune.trainer.varlen_attention).
"""

import pytest
import torch

from tests.kernels.kernel_env import ON_GPU
from tests.kernels.tiny_models import build_base, with_lora
from tests.kernels.tolerances import check, check_model
from tuitune.trainer.patching import apply_kernels
from tuitune.trainer.varlen_attention import available, packed_attention

LENGTHS = (7, 12, 5, 9)


def _examples(vocab: int = 320, seed: int = 5) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g) for n in LENGTHS]


def _packed(examples, device):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    collate = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    batch = collate([{"input_ids": e.tolist()} for e in examples])
    assert "attention_mask" not in batch and batch["input_ids"].shape == (1, sum(LENGTHS))
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _summed_loss_and_grads(model, runs):
    """Sum over `runs` (dicts of model inputs) of the token-summed loss, and the LoRA gradients."""
    model.zero_grad(set_to_none=True)
    total = 0.0
    for inputs in runs:
        tokens = int((inputs["labels"][:, 1:] != -100).sum())
        # use_cache=False as in training (TRL and the trainer set it): with a cache, transformers
        # does not derive the block-diagonal mask from the positions.
        loss = model(**inputs, use_cache=False).loss * tokens
        loss.backward()
        total += loss.detach()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return total, grads


@pytest.mark.parametrize("patched", [False, True], ids=["stock", "tuitune"])
def test_a_packed_row_gives_each_example_its_unpacked_loss_and_gradients(patched):
    device = "cuda" if ON_GPU else "cpu"
    dtype = torch.bfloat16 if ON_GPU else torch.float32  # on the GPU: the flash (16-bit) path
    model = with_lora(build_base("llama", dtype, attn_implementation="sdpa"), "llama").to(device)
    if patched:
        assert apply_kernels(model, allow_cpu=True).supported
    model.train()
    examples = _examples()
    alone = [{"input_ids": e[None].to(device), "labels": e[None].to(device)} for e in examples]
    packed = _packed(examples, device)
    loss_alone, grads_alone = _summed_loss_and_grads(model, alone)
    loss_packed, grads_packed = _summed_loss_and_grads(model, [packed])
    tag = f"packing.{'tuitune' if patched else 'stock'}"
    check_model(f"{tag}.loss", loss_packed, loss_alone, dtype)
    for name in grads_alone:
        check_model(f"{tag}.lora_grad", grads_packed[name], grads_alone[name], dtype)


def test_packed_attention_declines_what_it_cannot_do():
    q = torch.randn(1, 4, 6, 16)
    bounds = {"cu_seq_lens_q": torch.tensor([0, 2, 6]), "cu_seq_lens_k": torch.tensor([0, 2, 6])}
    assert packed_attention(q, q, q, scaling=0.25, kwargs={}) is None          # not a packed row
    if not available(q.device):
        assert packed_attention(q, q, q, scaling=0.25, kwargs=bounds) is None  # no CUDA here
    two_rows = torch.randn(2, 4, 6, 16)
    assert packed_attention(two_rows, two_rows, two_rows, scaling=0.25, kwargs=bounds) is None


@pytest.mark.skipif(not ON_GPU or not available(torch.device("cuda")), reason="variable-length attention needs CUDA")
@pytest.mark.parametrize("heads,kv_heads", [(8, 8), (8, 2)])
def test_varlen_attention_matches_a_float64_block_diagonal_reference(heads, kv_heads):
    torch.manual_seed(0)
    lengths, dim, scaling = [37, 1, 128, 70], 64, 0.11
    total = sum(lengths)
    dev, bf = "cuda", torch.bfloat16
    q = torch.randn(1, heads, total, dim, device=dev, dtype=bf, requires_grad=True)
    k = torch.randn(1, kv_heads, total, dim, device=dev, dtype=bf, requires_grad=True)
    v = torch.randn(1, kv_heads, total, dim, device=dev, dtype=bf, requires_grad=True)
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32)
    kwargs = {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": max(lengths), "max_length_k": max(lengths)}
    out = packed_attention(q, k, v, scaling=scaling, kwargs=kwargs)
    assert out is not None and out.shape == (1, total, heads, dim)
    grad = torch.randn_like(out)
    out.backward(grad)

    example = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths)).to(dev)
    pos = torch.arange(total, device=dev)
    allowed = (example[:, None] == example[None, :]) & (pos[:, None] >= pos[None, :])
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    groups = heads // kv_heads
    scores = (q64 @ k64.repeat_interleave(groups, 1).transpose(-1, -2)) * scaling
    ref = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v64.repeat_interleave(groups, 1)
    ref = ref.transpose(1, 2)
    ref.backward(grad.double())
    check("varlen_attention.out", out, ref, bf)
    for name, ours, theirs in (("dq", q, q64), ("dk", k, k64), ("dv", v, v64)):
        check(f"varlen_attention.{name}", ours.grad, theirs.grad, bf)
