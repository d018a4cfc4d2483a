"""Will it fit? GPU memory needed to fine-tune a model, by arithmetic on its shapes (no torch).

The estimate is the peak device memory a training step holds: the caching allocator's peak
reservation plus the CUDA context, which is what a GPU's "used" figure shows. Every term is
computed from the shapes; the per-token constants were fitted to peaks measured on an H200 with
the stock transformers + PEFT + bitsandbytes path and with tuitune's kernels (BENCHMARKS.md has
the table; tests/core/test_calibration.py holds every measured point to within 15%).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from tuitune.catalog import ModelSpec
from tuitune.pool_lending import loss_borrows_the_pool

GIB = 1024**3
METHODS = ("qlora", "lora", "full")
CHECKPOINTING = ("standard", "none", "offloaded")
AUTO_ORDER = ("none", "standard", "offloaded")  # checkpointing modes, fastest first (what `auto` tries)
OPTIMIZERS = ("adamw_8bit", "paged_adamw_8bit", "adamw_torch", "sgd")
SEVEN_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
STATUSES = ("fits", "tight", "does not fit")
# Architectures tuitune's patcher gives its kernels (and so the fused loss); others train stock.
KERNEL_ARCHITECTURES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3"})
TIGHT_MARGIN = 0.10  # within 10% of the free memory counts as tight

# NF4 with double quantization: 4 bits a weight, an 8-bit absmax per 64 weights and an fp32
# second-level scale per 256 absmax values.
NF4_BYTES = (4 + 8 / 64 + 32 / (64 * 256)) / 8

# Per token, fitted to the H200 peaks (peak reservation, so allocator slack is included), one set for
# the stock path and one for tuitune's kernels path (fused LoRA projections, fused linear +
# cross-entropy and tuitune's checkpointing, which `fused_loss=True` stands for):
# - bf16 elements one decoder layer keeps for backward, per hidden unit and per FFN unit.
#   Stock: norm inputs and their fp32 upcasts, q/k/v/o with the fp32 copies PEFT makes for the LoRA
#   branch, attention output; gate, up, the activation, their product and down's input.
#   Kernels: the fused projections keep their inputs and gate/up; norms stay in bf16.
ACT_PER_HIDDEN = 13.2
ACT_PER_FFN = 6.0
KERNELS_ACT_PER_HIDDEN = 7.55
KERNELS_ACT_PER_FFN = 2.0
# - stock loss: bf16 logits, their fp32 upcast, log-softmax output and its gradient (per logit).
LOGITS_BYTES_STOCK = 13.3
# - fused linear + cross-entropy: chunks of logits no larger than the hidden states (fp32, with grad).
LOGITS_BYTES_FUSED_PER_HIDDEN = 8.0
# - model-wide hidden-sized buffers (final norm, the gradient flowing back from the head, the fused
#   loss's fp32 hidden-state gradient on the kernels path), per hidden unit.
GLOBAL_PER_HIDDEN = 39.0
KERNELS_GLOBAL_PER_HIDDEN = 63.1
# - kernels path with recomputation (measured 2026-12-01, llama-8b and llama-1b, 4,096 to 98,304
#   tokens): bytes per hidden unit per token beyond the kept layer inputs, and a fixed part per hidden
#   unit (the loss's and the chunked MLP's buffers).
KERNELS_RECOMPUTE_PER_HIDDEN = 26.0
KERNELS_RECOMPUTE_FIXED_PER_HIDDEN = 230_000.0
CUDA_CONTEXT_GB = 0.15  # measured: device memory held beyond the allocator's reservation
OFFLOAD_LAYERS_ON_GPU = 2  # checkpointed layer inputs in flight while offloading to the CPU
# Offloaded checkpointing on the kernels path keeps each layer's q, k, v and o_proj outputs beside its
# input (the recompute then runs none of those GEMMs) while an entry, input and outputs, stays within
# this many bytes (tuitune.trainer.activation_checkpointing holds to it). Two entries are on the GPU
# at once in the backward pass (the layer's and the one fetched ahead), so at long sequences
# (llama-8b at 98,304 tokens: 0.8 GB of input, 2.8 GB with the outputs) they would cost GiBs of GPU
# memory for a few percent of the step; past the limit a layer keeps only its input.
KEEP_ENTRY_LIMIT = 512 << 20


@dataclass
class FitEstimate:
    method: str
    total_gb: float
    breakdown: dict[str, float] = field(default_factory=dict)
    batch: int = 0
    seq: int = 0
    exact: bool = True  # False when the model's shapes are unknown (only weights are counted)

    @property
    def tokens(self) -> int:
        return self.batch * self.seq


def _projection_shapes(spec: ModelSpec) -> dict[str, tuple[int, int, int]]:
    """{projection: (in, out, copies per layer)} for the seven LoRA targets."""
    h, hd = spec.hidden, spec.attn_head_dim
    q_out, kv_out = spec.heads * hd, spec.kv_heads * hd
    ffn = spec.expert_intermediate or spec.intermediate
    experts = spec.num_experts if spec.num_experts > 1 else 1
    return {
        "q_proj": (h, q_out, 1), "k_proj": (h, kv_out, 1), "v_proj": (h, kv_out, 1), "o_proj": (q_out, h, 1),
        "gate_proj": (h, ffn, experts), "up_proj": (h, ffn, experts), "down_proj": (ffn, h, experts),
    }


def lora_params(spec: ModelSpec, rank: int, target_modules: Sequence[str] | int = SEVEN_PROJECTIONS) -> int:
    if isinstance(target_modules, int):
        target_modules = SEVEN_PROJECTIONS[:target_modules]
    shapes = _projection_shapes(spec)
    per_layer = sum(rank * (i + o) * n for name, (i, o, n) in shapes.items() if name in target_modules)
    return per_layer * spec.layers


def _embedding_params(spec: ModelSpec) -> int:
    return spec.vocab * spec.hidden * (1 if spec.tied_embeddings else 2)


def _optimizer_bytes(optimizer: str, param_bytes: int) -> float:
    """Bytes of optimizer state per trainable parameter."""
    if optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        return 2.0
    if optimizer == "sgd":
        return 0.0
    return 2.0 * param_bytes  # two moments in the parameter's dtype


# The kept-activation graphs' pool beyond the layers' inputs and outputs (GiB; see estimate).
KEPT_GRAPHS_SLACK_GB = 0.12


def kept_outputs_per_input(spec: ModelSpec) -> float:
    """Bytes of the q, k, v and o_proj outputs an offloaded layer keeps, per byte of its input."""
    head_dim = spec.attn_head_dim
    return (spec.heads * head_dim + 2 * spec.kv_heads * head_dim + spec.hidden) / spec.hidden


def estimate(spec: ModelSpec, method: str, *, batch: int = 2, seq: int = 2048, rank: int = 16,
             checkpointing: str = "standard", fused_loss: bool = True,
             target_modules: Sequence[str] | int = SEVEN_PROJECTIONS,
             optimizer: str = "adamw_8bit", cuda_graphs: bool = False,
             dequantized: bool = False) -> FitEstimate:
    """Peak GPU memory (GiB) to train `spec` with `method` at `batch` × `seq` tokens.

    `fused_loss=True` is tuitune's kernels path (fused linear + cross-entropy, so no full logits,
    and the fused LoRA projections); False is the stock transformers + PEFT path. QLoRA keeps the
    decoder's linear weights in NF4 and embeddings in bf16; LoRA keeps all weights in bf16; both
    train fp32 adapters. Full fine-tuning trains every bf16 weight, with bf16 gradients. `checkpointing` is
    none, standard (each layer's input kept) or offloaded (each layer's input in CPU memory; on the kernels
    path a frozen, untied input-embedding table goes there too). ``cuda_graphs`` (kernels path):
    with recomputation the layers' CUDA graphs keep one layer's working set in a pool of their own
    and two layer-sized buffers (tuitune.trainer.layer_graphs); without, each layer's input and
    output are kept twice over, once for its graphs (tuitune.trainer.kept_layer_graphs), and batches
    of other shapes replay checkpointed in a recompute graphs' pool as well.
    ``dequantized`` (QLoRA on the kernels path, `training.dequantize_once`): the 4-bit linear weights
    are also kept dequantized in bf16 for the run.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if checkpointing not in CHECKPOINTING:
        raise ValueError(f"checkpointing must be one of {CHECKPOINTING}, got {checkpointing!r}")
    total_params = int(spec.params_b * 1e9)
    if not spec.shape_known:
        weights = total_params * (NF4_BYTES if method == "qlora" else 2)
        gb = weights / GIB + CUDA_CONTEXT_GB
        return FitEstimate(method, gb, {"weights": weights / GIB, "lora": 0.0, "gradients": 0.0,
                                        "optimizer": 0.0, "activations": 0.0, "logits": 0.0,
                                        "overhead": CUDA_CONTEXT_GB}, batch, seq, exact=False)
    h, layers = spec.hidden, spec.layers
    embed = _embedding_params(spec)
    linear = max(total_params - embed, 0)
    tokens = batch * seq

    # Weights, and the trainable parameters with their gradients and optimizer state.
    if method == "qlora":
        weights = linear * NF4_BYTES + embed * 2
        if dequantized and fused_loss:
            weights += linear * 2.0
    else:
        weights = total_params * 2.0
    if checkpointing == "offloaded" and fused_loss and not spec.tied_embeddings and method != "full":
        weights -= spec.vocab * h * 2.0  # the frozen input table waits in pinned CPU memory
    if method == "full":
        n_lora, lora_bytes = 0, 0.0
        gradients = total_params * 2.0
        optimizer_state = total_params * _optimizer_bytes(optimizer, 2)
    else:
        n_lora = lora_params(spec, rank, target_modules)
        lora_bytes = n_lora * 4.0  # PEFT keeps adapters in fp32
        gradients = n_lora * 4.0
        optimizer_state = n_lora * _optimizer_bytes(optimizer, 4)

    # Activations: checkpointed layer inputs plus the layers whose intermediates are alive at once.
    ffn = (spec.expert_intermediate or spec.intermediate) * max(spec.experts_per_token, 1)
    act_h, act_ffn, global_h = ((KERNELS_ACT_PER_HIDDEN, KERNELS_ACT_PER_FFN, KERNELS_GLOBAL_PER_HIDDEN)
                                if fused_loss else (ACT_PER_HIDDEN, ACT_PER_FFN, GLOBAL_PER_HIDDEN))
    per_layer = 2.0 * (act_h * h + act_ffn * ffn) * tokens
    layer_input = 2.0 * h * tokens
    kept_inputs = layers * layer_input if checkpointing == "standard" else OFFLOAD_LAYERS_ON_GPU * layer_input
    if checkpointing == "offloaded" and fused_loss and method != "full" and not cuda_graphs:
        kept = kept_outputs_per_input(spec) * layer_input
        if layer_input + kept <= KEEP_ENTRY_LIMIT:
            kept_inputs += OFFLOAD_LAYERS_ON_GPU * kept
    if checkpointing == "none":
        activations = layers * per_layer + global_h * h * tokens
    elif fused_loss and method != "full":
        # The kernels recompute the MLP in chunks of a fixed size and the loss in fixed-size chunks, so
        # beyond the kept layer inputs the peak grows slowly with the tokens (fitted to 4,096 and
        # 98,304 tokens), plus one MLP's weights dequantized at a time under QLoRA.
        activations = kept_inputs + KERNELS_RECOMPUTE_PER_HIDDEN * h * tokens + KERNELS_RECOMPUTE_FIXED_PER_HIDDEN * h
        if method == "qlora":
            activations += 3 * 2.0 * h * ffn
    else:
        activations = kept_inputs + per_layer + global_h * h * tokens
    graphs = 0.0
    if cuda_graphs and fused_loss and method != "full":
        # The recompute graphs' pool: one layer's working set. Measured (H100, 2026-12-05): 0.51 GiB for
        # llama-1b and 1.10 GiB for llama-8b at 4,096 tokens, against 0.74 and 1.61 GiB here.
        graphs = (KERNELS_RECOMPUTE_PER_HIDDEN * h * tokens + KERNELS_RECOMPUTE_FIXED_PER_HIDDEN * h
                  + (3 * 2.0 * h * ffn if method == "qlora" else 0.0) + 2 * layer_input)
        if checkpointing == "offloaded" and loss_borrows_the_pool():
            # The offloaded LM head's GPU copy and a logits chunk live in the pool in the loss phase
            # (tuitune.trainer.loss_in_graph_pool). Measured (H100, 2026-12-07, llama-1b at 4,096
            # tokens): 1.45 GiB lent, 1.44 eager, 2.00 lent nowhere.
            graphs = max(graphs - spec.vocab * h * 2.0, 0.0)
        if checkpointing == "none":
            # Layers that keep their activations hold each input and output once more. Measured over
            # eager with one batch shape (H100, 2026-12-06, 4,096 tokens): 0.61 GiB for llama-1b and
            # 1.65 GiB for llama-8b, against 0.62 and 2.12 GiB for this part alone.
            graphs += 2 * layers * layer_input + KEPT_GRAPHS_SLACK_GB * GIB
            # Batches of other shapes replay checkpointed while those activations stay held: their
            # layers' inputs, and the recompute graphs' pool (the term above).
            graphs += layers * layer_input

    if fused_loss:
        logits = LOGITS_BYTES_FUSED_PER_HIDDEN * h * tokens
    else:
        logits = LOGITS_BYTES_STOCK * spec.vocab * tokens

    breakdown_bytes = {
        "weights": weights, "lora": lora_bytes, "gradients": gradients, "optimizer": optimizer_state,
        "activations": activations, "logits": logits,
    }
    if graphs:
        breakdown_bytes["graphs"] = graphs
    breakdown = {k: v / GIB for k, v in breakdown_bytes.items()}
    breakdown["overhead"] = CUDA_CONTEXT_GB
    return FitEstimate(method, sum(breakdown.values()), breakdown, batch, seq)


def fastest_fitting_mode(needs_gb: dict[str, float], free_gb: float) -> str:
    """The first mode of `needs_gb` (ordered fastest first) whose estimate fits; the last when none does."""
    for mode, need in needs_gb.items():
        if fit_status(need, free_gb) == "fits":
            return mode
    return list(needs_gb)[-1]


def fit_status(total_gb: float, free_gb: float) -> str:
    """fits, tight (within 10% of the free memory) or does not fit."""
    if total_gb > free_gb:
        return "does not fit"
    if total_gb > free_gb * (1 - TIGHT_MARGIN):
        return "tight"
    return "fits"


DEFAULT_SEQS = (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 98304, 131072)
DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64)


def largest_fit(spec: ModelSpec, method: str, free_gb: float, *, rank: int = 16,
                checkpointing: str = "standard", fused_loss: bool = True,
                seqs: Sequence[int] = DEFAULT_SEQS, batches: Sequence[int] = DEFAULT_BATCHES,
                optimizer: str = "adamw_8bit") -> tuple[int, int] | None:
    """The (batch, seq) with the most tokens whose estimate has status "fits" (longer seq wins ties).

    Sequence lengths beyond the model's context are skipped. None when not even the smallest fits.
    """
    if checkpointing == "auto":
        checkpointing = AUTO_ORDER[-1]  # auto can always fall back to the lightest mode
    best: tuple[int, int] | None = None
    limit = spec.context or max(seqs)
    for seq in sorted(s for s in seqs if s <= limit):
        for batch in sorted(batches):
            est = estimate(spec, method, batch=batch, seq=seq, rank=rank, checkpointing=checkpointing,
                           fused_loss=fused_loss, optimizer=optimizer)
            if fit_status(est.total_gb, free_gb) != "fits":
                break
            if best is None or batch * seq >= best[0] * best[1]:
                best = (batch, seq)
    return best


@dataclass
class MethodFit:
    method: str
    estimate: FitEstimate
    status: str  # fits | tight | does not fit | unknown
    largest: tuple[int, int] | None
    checkpointing: str = "standard"  # the mode estimated (what `auto` picked, when asked for auto)

    @property
    def largest_label(self) -> str:
        return f"{self.largest[0]}×{self.largest[1]}" if self.largest else "—"


@dataclass
class FitRow:
    """One model against one free-memory figure: every method's status and largest batch × seq."""

    spec: ModelSpec
    free_gb: float
    methods: dict[str, MethodFit]

    def __getitem__(self, method: str) -> MethodFit:
        return self.methods[method]


def kernels_supported(spec: ModelSpec) -> bool:
    return spec.architecture in KERNEL_ARCHITECTURES


def fit_row(spec: ModelSpec, free_gb: float, *, batch: int = 2, seq: int = 2048, rank: int = 16,
            checkpointing: str = "standard", fused_loss: bool | None = None,
            optimizer: str = "adamw_8bit") -> FitRow:
    """`fused_loss=None` uses the fused loss where tuitune's kernels support the architecture."""
    if fused_loss is None:
        fused_loss = kernels_supported(spec)
    methods = {}
    for method in METHODS:
        mode = checkpointing
        if checkpointing == "auto":
            needs = {m: estimate(spec, method, batch=batch, seq=seq, rank=rank, checkpointing=m,
                                 fused_loss=fused_loss, optimizer=optimizer).total_gb for m in AUTO_ORDER}
            mode = fastest_fitting_mode(needs, free_gb)
        est = estimate(spec, method, batch=batch, seq=seq, rank=rank, checkpointing=mode,
                       fused_loss=fused_loss, optimizer=optimizer)
        if not est.exact:
            methods[method] = MethodFit(method, est, "unknown", None, mode)
            continue
        largest = largest_fit(spec, method, free_gb, rank=rank, checkpointing=checkpointing,
                              fused_loss=fused_loss, optimizer=optimizer)
        methods[method] = MethodFit(method, est, fit_status(est.total_gb, free_gb), largest, mode)
    return FitRow(spec, free_gb, methods)
