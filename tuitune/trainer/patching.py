"""Swap tuitune's Triton kernels into a PEFT-wrapped causal LM, module instance by module instance.

`apply_kernels(model)` is called explicitly by the trainer (never at import). It replaces the
``forward`` of the model's own module instances -- RMSNorms, attention blocks, MLPs and the
causal-LM head -- with functions that call `tuitune.kernels`; no library source and no class is
changed, so other models in the same process stay on the stock path. Supported: Llama, Mistral,
Qwen2, Qwen3, Gemma, Gemma 2 and Phi-3 as written in transformers 5.x. Any other architecture is
left untouched and the report says why.

What each replacement does:
- RMSNorm -> `rms_norm` (offset 1.0 for Gemma's ``1 + weight``), including Qwen3's q/k norms.
- attention -> `lora_qkv` (or Phi-3's fused ``qkv_proj`` through `lora_o`), `rope` on q and k in
  one launch, the model's configured attention function (variable-length flash attention for packed
  rows on a GPU: tuitune.trainer.varlen_attention), and `lora_o` for the output projection.
- MLP -> `lora_mlp` (SwiGLU or GeGLU by the config's activation; Phi-3's fused ``gate_up_proj``
  goes through `lora_o` + `swiglu` + `lora_o`).
- causal-LM head -> with ``labels`` (or TRL's ``fused_lm_head=True``): `fused_linear_cross_entropy`
  over the non-ignored positions, never forming the logits; without labels the stock forward runs,
  so generation is unchanged.
A projection the fused path cannot reproduce exactly (DoRA, LoRA dropout > 0, several active
adapters, merged or disabled adapters, a trainable base weight, 8-bit base) is called as the stock
module inside the patched forward, so results never change, only speed.
"""

from __future__ import annotations

import functools
import os
import sys
import types
from collections import Counter
from dataclasses import dataclass, field

import torch

from tuitune.trainer.fused_loss_mark import FUSED_FORWARD

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3")
_PATCHED = "_tuitune_patched"
LOSS_ALLOCATOR = "_tuitune_loss_allocator"  # on the causal LM: (shape, dtype) -> the loss's logits buffer


@dataclass
class PatchReport:
    architecture: str
    supported: bool
    reason: str | None = None
    replaced: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Arch:
    norm_offset: float = 0.0
    sliding_window: str = "none"  # "none": not passed; "config": config.sliding_window; "module": self.sliding_window
    attn_softcap: bool = False
    fused_qkv: bool = False
    fused_gate_up: bool = False
    # The decoder layer adds the MLP's output straight to the residual stream, so a recompute pass
    # never reads its values (see lora_mlp's "deferred" mode). Not Gemma 2: it normalises it first.
    mlp_output_to_residual: bool = True


_ARCHS = {
    "llama": _Arch(),
    "mistral": _Arch(sliding_window="config"),
    "qwen2": _Arch(sliding_window="module"),
    "qwen3": _Arch(sliding_window="module"),
    "gemma": _Arch(norm_offset=1.0),
    "gemma2": _Arch(norm_offset=1.0, sliding_window="module", attn_softcap=True, mlp_output_to_residual=False),
    "phi3": _Arch(sliding_window="config", fused_qkv=True, fused_gate_up=True, mlp_output_to_residual=False),
}

_ACTIVATIONS = {"silu": "swiglu", "swish": "swiglu", "gelu": "geglu", "gelu_pytorch_tanh": "geglu_tanh",
                "gelu_new": "geglu_tanh"}


def apply_kernels(model, *, allow_cpu: bool = False) -> PatchReport:
    """Patch ``model`` (a PEFT model, or a bare transformers causal LM) in place; see the module doc.

    Idempotent: modules already patched are skipped. Returns what was replaced, per kind.
    A model on the CPU is left on the stock path (Triton's interpreter is far slower than PyTorch)
    unless ``allow_cpu`` is set and TRITON_INTERPRET=1 -- the kernel tests do that.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    arch_name = getattr(config, "model_type", None) or type(base).__name__
    if arch_name not in _ARCHS:
        return PatchReport(arch_name, False, f"no tuitune kernels for model type '{arch_name}' (supported: "
                                             f"{', '.join(SUPPORTED)})")
    backbone = getattr(base, "model", None)
    layers = getattr(backbone, "layers", None)
    if layers is None or not hasattr(base, "lm_head"):
        return PatchReport(arch_name, False, f"{type(base).__name__} is not a causal LM with a decoder stack "
                                             "(expected .model.layers and .lm_head)")
    device = next(base.parameters()).device
    if device.type != "cuda" and not (allow_cpu and os.environ.get("TRITON_INTERPRET") == "1"):
        return PatchReport(arch_name, False, f"the model is on the {device.type}; tuitune's Triton kernels need "
                                             "a CUDA GPU")
    arch = _ARCHS[arch_name]
    activation = _ACTIVATIONS.get(getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", ""))
    counts: Counter[str] = Counter()
    for module in base.modules():
        if type(module).__name__.endswith("RMSNorm") and _patch(module, _rms_norm_forward, offset=arch.norm_offset):
            counts["rms_norm"] += 1
    for layer in layers:
        attn = getattr(layer, "self_attn", None)
        if attn is not None and _patch(attn, _attention_forward, arch=arch):
            counts["attention"] += 1
        mlp = getattr(layer, "mlp", None)
        if mlp is not None and activation is not None:
            if arch.fused_gate_up and _patch(mlp, _fused_gate_up_mlp_forward):
                counts["mlp"] += 1
            elif not arch.fused_gate_up and _patch(mlp, _mlp_forward, activation=activation,
                                                   defer_in_recompute=arch.mlp_output_to_residual):
                counts["mlp"] += 1
    if _plain_linear(base.lm_head) and _patch_lm_head(base):
        counts["causal_lm_loss"] += 1
    if not counts:
        return PatchReport(arch_name, True, "already patched", {})
    return PatchReport(arch_name, True, None, dict(counts))


def _patch(module, fn, **attrs) -> bool:
    if getattr(module, _PATCHED, False):
        return False
    for k, v in attrs.items():
        setattr(module, f"_tuitune_{k}", v)
    module.forward = types.MethodType(fn, module)
    setattr(module, _PATCHED, True)
    return True


# ----------------------------------------------------------------------------------------- norms

def _rms_norm_forward(self, hidden_states):
    from tuitune.kernels import rms_norm

    eps = getattr(self, "variance_epsilon", None)
    if eps is None:
        eps = self.eps
    return rms_norm(hidden_states, self.weight, eps, offset=self._tuitune_offset)


# ----------------------------------------------------------------------------------- projections

def lora_weights_of(module):
    """A `LoRAWeights` view of a PEFT LoRA linear (or a plain / 4-bit linear), or None when the fused
    path would not reproduce the module exactly.

    Kept on the module and rebuilt only when what it depends on changes (training mode, merged or
    disabled adapters, the active adapter, the base weight object): it is asked for at every forward."""
    key = _lora_state(module)
    kept = module.__dict__.get("_tuitune_lora_weights")
    if kept is not None and kept[0] == key:
        return kept[1]
    weights = _read_lora_weights(module)
    module.__dict__["_tuitune_lora_weights"] = (key, weights)
    return weights


def _lora_state(module) -> tuple:
    base = module.__dict__.get("_modules", {}).get("base_layer")
    if base is None:
        return (module.training, id(getattr(module, "weight", None)))
    return (module.training, bool(module.merged_adapters), module.disable_adapters, tuple(module.active_adapters),
            id(getattr(base, "weight", None)), tuple(module.scaling.items()))


def _read_lora_weights(module):
    from tuitune.kernels import LoRAWeights

    if hasattr(module, "base_layer") and hasattr(module, "lora_A"):
        if getattr(module, "merged", False):
            return None  # PEFT unmerges first when the adapter is also disabled: leave that to it
        active = [a for a in module.active_adapters if a in module.lora_A]
        base = module.get_base_layer()
        # disabled: DPO's reference pass; on the fused path its base GEMMs round as the policy's do
        if not active or getattr(module, "disable_adapters", False):
            return _plain_weights(base)
        if len(active) > 1:
            return None
        name = active[0]
        if getattr(module, "use_dora", {}).get(name, False):
            return None
        dropout = module.lora_dropout[name]
        if isinstance(dropout, torch.nn.Dropout) and dropout.p > 0 and module.training:
            return None
        a, b = module.lora_A[name], module.lora_B[name]
        if not isinstance(a, torch.nn.Linear) or a.bias is not None or b.bias is not None:
            return None
        plain = _plain_weights(base)
        if plain is None:
            return None
        return LoRAWeights(plain.weight, plain.bias, a.weight, b.weight, float(module.scaling[name]))
    return _plain_weights(module)


def _plain_weights(module):
    from tuitune.kernels import LoRAWeights

    if not isinstance(module, torch.nn.Linear):
        return None
    w = _with_quant_state(module)
    four_bit = getattr(w, "quant_state", None) is not None
    if not four_bit and (type(module).forward is not torch.nn.Linear.forward or not w.dtype.is_floating_point):
        return None  # an 8-bit or otherwise custom linear: leave it to its own forward
    if w.requires_grad or (module.bias is not None and module.bias.requires_grad):
        return None
    return LoRAWeights(w, module.bias)


def _with_quant_state(module):
    """The module's weight; for a bitsandbytes 4-bit linear under FSDP2, a view of it that carries its
    quantization state.

    FSDP2 gathers a sharded 4-bit weight as a plain parameter, without the `quant_state` that decodes
    it (bitsandbytes' own forward restores it from the module, `fix_4bit_weight_quant_state_from_module`).
    The view shares the gathered storage, which FSDP2 refills at every gather, and keeps the gathered
    parameter alive so that `_lora_state`'s id of it stays unique while the view is kept."""
    w = module.weight
    if getattr(w, "quant_state", None) is not None or getattr(module, "quant_state", None) is None:
        return w
    if not type(module).__module__.startswith("bitsandbytes") or w.dim() != 2 or w.shape[1] != 1:
        return w
    from bitsandbytes.nn import Params4bit

    view = Params4bit(w.data, requires_grad=False, quant_state=module.quant_state,
                      quant_type=module.quant_state.quant_type, quant_storage=w.dtype, bnb_quantized=True)
    view._tuitune_gathered = w
    return view


def _plain_linear(module) -> bool:
    return type(module) is torch.nn.Linear and getattr(module, "bias", None) is None


def _project(module, x):
    from tuitune.kernels import lora_o

    w = lora_weights_of(module)
    return module(x) if w is None else lora_o(x, w)


# ------------------------------------------------------------------------------------- attention

def _attention_forward(self, hidden_states, position_embeddings=None, attention_mask=None, cache=None, **kwargs):
    from tuitune.kernels import rope

    from .kept_attention import keep_or_replay, output_projection, query_key_value
    from .varlen_attention import packed_attention

    if "past_key_values" in kwargs:
        cache = kwargs.pop("past_key_values")
    arch: _Arch = self._tuitune_arch
    input_shape = hidden_states.shape[:-1]
    hidden_shape = (*input_shape, -1, self.head_dim)
    if arch.fused_qkv:
        qkv = _project(self.qkv_proj, hidden_states)
        q_end = self.config.num_attention_heads * self.head_dim
        kv = self.num_key_value_heads * self.head_dim
        q, k, v = qkv[..., :q_end], qkv[..., q_end:q_end + kv], qkv[..., q_end + kv:]
    else:
        ws = [lora_weights_of(m) for m in (self.q_proj, self.k_proj, self.v_proj)]
        if all(w is not None for w in ws):
            q, k, v = query_key_value(hidden_states, *ws)
        else:
            q, k, v = (self.q_proj(hidden_states), self.k_proj(hidden_states), self.v_proj(hidden_states))
    q, k, v = q.view(hidden_shape), k.view(hidden_shape), v.view(hidden_shape)
    if hasattr(self, "q_norm"):
        q, k = self.q_norm(q), self.k_norm(k)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    cos, sin = position_embeddings
    q, k = rope(q, k, cos, sin)
    if cache is not None:
        k, v = cache.update(k, v, self.layer_idx, kwargs=kwargs)

    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    eager = sys.modules[type(self).__module__].eager_attention_forward
    attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager)
    extra = {}
    if arch.sliding_window == "config":
        extra["sliding_window"] = getattr(self.config, "sliding_window", None)
    elif arch.sliding_window == "module":
        extra["sliding_window"] = self.sliding_window
    if arch.attn_softcap:
        extra["softcap"] = self.attn_logit_softcapping
    dropout = 0.0 if not self.training else self.attention_dropout
    out = packed_attention(q, k, v, scaling=self.scaling, kwargs=kwargs, dropout=dropout,
                           sliding_window=extra.get("sliding_window"), softcap=extra.get("softcap"))
    if out is None:  # not packed examples (variable-length flash attention, no mask): kept attention?
        out = keep_or_replay(self, q, k, v, attention_mask, dropout, extra)
    weights = None
    if out is None:
        with _sdpa_priority(q.device):
            out, weights = attention_interface(self, q, k, v, attention_mask, dropout=dropout,
                                               scaling=self.scaling, **extra, **kwargs)
    out = out.reshape(*input_shape, -1).contiguous()
    return (self.o_proj(out) if (w_o := lora_weights_of(self.o_proj)) is None else output_projection(out, w_o)), weights


def _sdpa_priority(device):
    """The scaled-dot-product attention backends to try first (TUITUNE_SDPA=cudnn puts cuDNN's
    fused attention first; unset keeps PyTorch's order)."""
    import contextlib

    choice = os.environ.get("TUITUNE_SDPA", "")
    if choice != "cudnn" or device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                        SDPBackend.MATH], set_priority=True)


# ------------------------------------------------------------------------------------------- MLP

def _mlp_forward(self, x):
    from tuitune.kernels import geglu, lora_mlp, swiglu

    from .activation_checkpointing import recomputing

    activation = self._tuitune_activation
    ws = [lora_weights_of(m) for m in (self.gate_proj, self.up_proj, self.down_proj)]
    if all(w is not None for w in ws):
        mode = "deferred" if self._tuitune_defer_in_recompute and recomputing() else "saved"
        return lora_mlp(x, *ws, activation=activation, mode=mode)
    gate, up = self.gate_proj(x), self.up_proj(x)
    if activation == "swiglu":
        h = swiglu(gate, up)
    else:
        h = geglu(gate, up, approximate="tanh" if activation == "geglu_tanh" else "none")
    return self.down_proj(h)


def _fused_gate_up_mlp_forward(self, x):
    from tuitune.kernels import swiglu

    gate, up = _project(self.gate_up_proj, x).chunk(2, dim=-1)
    return _project(self.down_proj, swiglu(gate, up))


# ------------------------------------------------------------------------------- causal-LM loss

def _patch_lm_head(base) -> bool:
    """Install the fused-loss forward on the causal-LM instance. Re-installs it when something else
    (TRL's ``add_fused_lm_head``, run by ``SFTTrainer.__init__``) has replaced it since."""
    ours = base.__dict__.get(FUSED_FORWARD)
    if ours is not None:
        if base.__dict__.get("forward") is ours:
            return False
        base.forward = ours
        return True
    stock = type(base).forward

    @functools.wraps(stock)
    def forward(self, *args, labels=None, fused_lm_head=False, shift_labels=None, num_items_in_batch=None,
                label_rows=None, host_facts=None, **kwargs):
        if (labels is None and shift_labels is None) or args:
            if labels is not None:
                kwargs["labels"] = labels
            if shift_labels is not None:
                kwargs["shift_labels"] = shift_labels
            if num_items_in_batch is not None:
                kwargs["num_items_in_batch"] = num_items_in_batch
            return stock(self, *args, **kwargs)
        return _fused_loss_forward(self, labels, shift_labels, num_items_in_batch, fused_lm_head, kwargs,
                                   label_rows, host_facts)

    ours = base.__dict__[FUSED_FORWARD] = types.MethodType(forward, base)
    base.forward = ours
    return True


def _fused_loss_forward(self, labels, shift_labels, num_items_in_batch, fused_lm_head, kwargs, rows=None,
                        facts=None):
    from transformers.modeling_outputs import CausalLMOutputWithPast

    from tuitune.kernels.ops.fused_linear_cross_entropy import fused_linear_cross_entropy_rows, logits_buffer_shape

    from .batch_facts import batch_facts_in_use, loss_targets
    from .fused_lm_output import fused_output_class, row_mean_logits
    from .head_offload import head_stash

    kwargs.pop("logits_to_keep", None)
    if "past_key_values" in kwargs:
        kwargs["cache"] = kwargs.pop("past_key_values")
    target = loss_targets(labels, shift_labels)
    mask = target != -100
    if rows is not None and (facts is None or not facts.rows_fit(target)):
        rows = None  # found for another batch than this one
    if rows is None:  # not found with the batch (batch_facts.py): found here, before the decoder runs,
        # so that the host's wait for the count falls where the GPU has the least queued
        rows = mask.reshape(-1).nonzero().squeeze(1)
    stash = head_stash(self.lm_head)
    if stash is not None and not stash.starts_with_first_layer and not stash.starts_at_loss:
        stash.start()  # the offloaded head's copy back overlaps the decoder
    with batch_facts_in_use(self, facts, kwargs):
        outputs = self.model(**kwargs)
    hidden = outputs.last_hidden_state
    if shift_labels is None:
        hidden = hidden[:, :-1]
    target = target.to(hidden.device)
    mask, rows = mask.to(hidden.device), rows.to(hidden.device)
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    flat_target = target.reshape(-1)
    if rows.numel() != flat_target.numel():
        flat_hidden, flat_target = flat_hidden.index_select(0, rows), flat_target.index_select(0, rows)
    softcap = getattr(self.config, "final_logit_softcapping", None)
    head = self.lm_head.weight if stash is None else stash.take()
    lend = self.__dict__.get(LOSS_ALLOCATOR)  # the graphs' pool lent to the loss (loss_in_graph_pool)
    buffer = None if lend is None else lend(logits_buffer_shape(flat_hidden.shape[0], head), flat_hidden.dtype)
    nll, entropy, top1 = fused_linear_cross_entropy_rows(flat_hidden, head, flat_target, softcap=softcap,
                                                         logits_buffer=buffer)
    denom = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
    loss = nll.sum() / denom
    if not fused_lm_head:
        return CausalLMOutputWithPast(loss=loss, logits=None, hidden_states=outputs.hidden_states,
                                      attentions=outputs.attentions)

    def spread(values, dtype):
        full = torch.zeros(mask.numel(), dtype=dtype, device=mask.device)
        return full.index_copy(0, rows, values.to(dtype)).view(mask.shape)

    mean_logits = row_mean_logits(flat_hidden, head, softcap)
    return fused_output_class()(
        loss=loss, log_probs=spread(-nll, torch.float32), entropy=spread(entropy, torch.float32),
        is_top1=spread(top1, torch.bool), mean_logits=spread(mean_logits, torch.float32), label_mask=mask)
