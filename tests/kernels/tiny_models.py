"""Tiny random-weight causal LMs of each supported architecture, built from config (no downloads),
wrapped with PEFT LoRA on every projection; optionally with a bitsandbytes NF4 base."""

from __future__ import annotations

import warnings

import torch

COMMON = dict(vocab_size=320, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)

CONFIGS = {
    "llama": ("LlamaConfig", {}),
    "mistral": ("MistralConfig", {"sliding_window": 8}),
    "qwen2": ("Qwen2Config", {}),
    "qwen3": ("Qwen3Config", {"head_dim": 16}),
    "gemma": ("GemmaConfig", {"head_dim": 16}),
    "gemma2": ("Gemma2Config", {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8,
                                "final_logit_softcapping": 5.0, "attn_logit_softcapping": 20.0}),
    "phi3": ("Phi3Config", {}),
}

TARGETS = {"phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]}
SEVEN = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_base(arch: str, dtype=torch.float32, nf4_dir=None, seed: int = 0, **overrides):
    """The bare causal LM. With ``nf4_dir`` (a folder), it is saved there and reloaded in NF4."""
    import transformers

    cls_name, extra = CONFIGS[arch]
    config = getattr(transformers, cls_name)(**{**COMMON, **extra, **overrides})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    if nf4_dir is None:
        return model
    model.save_pretrained(nf4_dir)
    q = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                        bnb_4bit_compute_dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoModelForCausalLM.from_pretrained(nf4_dir, quantization_config=q, dtype=dtype)


def with_lora(model, arch: str, rank: int = 8, seed: int = 0, random_b: bool = True):
    """PEFT LoRA on every projection; B made non-zero so that every adapter gets a gradient."""
    from peft import LoraConfig, get_peft_model

    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=16, lora_dropout=0.0,
                                                  target_modules=TARGETS.get(arch, SEVEN), task_type="CAUSAL_LM"))
    if random_b:
        g = torch.Generator().manual_seed(seed + 1)
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.data = (torch.randn(p.shape, generator=g) * 0.05).to(p.device, p.dtype)
    return peft_model


def adamw_losses(model, lengths, *, rows: int, vocab: int, lr: float, set_to_none: bool = True,
                 after_step=None) -> list[torch.Tensor]:
    """The (detached) loss of each of a few AdamW steps of ``model`` on random batches of ``rows`` rows
    of each of ``lengths`` tokens (labels = inputs, a fixed seed); ``after_step()`` runs after each."""
    device = next(model.parameters()).device
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for length in lengths:
        ids = torch.randint(0, vocab, (rows, length), generator=generator).to(device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=set_to_none)
        losses.append(loss.detach())
        if after_step is not None:
            after_step()
    return losses


def batch(vocab: int = 320, rows: int = 2, seq: int = 12, seed: int = 3, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (rows, seq), generator=g)
    attention = torch.ones_like(ids)
    attention[1, -3:] = 0  # a padded row
    labels = ids.clone()
    labels[attention == 0] = -100
    labels[0, :4] = -100  # a masked prompt
    return {k: v.to(device) for k, v in {"input_ids": ids, "attention_mask": attention, "labels": labels}.items()}


def dequantized_twin(model):
    """Replace every bitsandbytes 4-bit linear of ``model`` by a plain ``nn.Linear`` holding exactly
    the weight its NF4 storage decodes to (bitsandbytes' own dequantization), in place.

    The stock reference for NF4 tests. Decoding uses bitsandbytes' generic (default-backend)
    dequantization, which reads blocks over the flattened weight exactly as its quantizer wrote
    them. Not its CPU C++ path, and not its CPU 4-bit matmul: with bitsandbytes 0.50.2, for a
    from_pretrained-quantized weight whose in_features is not a multiple of the block size (the
    tiny models' down_proj, 96 wide) the CPU path decodes wrong blocks (4x further from the
    original weight than the generic path), and the CPU matmul is about 1e-3 relative off
    ``x @ W.T`` even where decoding is right.
    """
    import bitsandbytes as bnb
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
    from bitsandbytes.functional import dequantize_blockwise

    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, bnb.nn.Linear4bit):
                qs = child.weight.quant_state
                absmax = qs.absmax
                if qs.nested:
                    absmax = dequantize_blockwise(qs.absmax, qs.state2) + qs.offset
                w = _dequantize_4bit_compute(child.weight.data.view(torch.uint8).reshape(-1), absmax.float(), qs.code,
                                             qs.blocksize, qs.shape, qs.dtype)
                dense = torch.nn.Linear(child.in_features, child.out_features, bias=child.bias is not None,
                                        device=w.device, dtype=w.dtype)
                dense.weight.data.copy_(w)
                if child.bias is not None:
                    dense.bias.data.copy_(child.bias.data)
                setattr(module, child_name, dense)
    return model


def train_with_a_parameter_outside_the_layer(mode: str, steps: int = 3):
    """A one-layer LoRA Llama whose MLP output is scaled by a trainable scalar the layer does not own,
    trained a few steps with CUDA graphs asked for under checkpointing ``mode``: (model, the scalar)."""
    from tuitune.trainer.activation_checkpointing import enable_checkpointing

    model = with_lora(build_base("llama", num_hidden_layers=1), "llama").train()
    layer = model.get_base_model().model.layers[0]
    outside = torch.nn.Parameter(torch.ones(()))
    inner = layer.mlp.forward
    layer.mlp.forward = lambda x: inner(x) * outside
    enable_checkpointing(model, mode, cuda_graphs=True)
    ids = torch.randint(0, 320, (2, 12))
    for _ in range(steps):
        model(input_ids=ids, labels=ids).loss.backward()
    return model, outside


def train_under_forward_autocast(mode: str, layers: int, steps: int = 3):
    """A LoRA Llama trained a few steps with CUDA graphs asked for under checkpointing ``mode``, each
    forward under bf16 autocast and each backward outside it, as a trainer with bf16 = true runs."""
    from tuitune.trainer.activation_checkpointing import enable_checkpointing

    model = with_lora(build_base("llama", num_hidden_layers=layers), "llama").train()
    enable_checkpointing(model, mode, cuda_graphs=True)
    ids = torch.randint(0, 320, (2, 12))
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
    return model

