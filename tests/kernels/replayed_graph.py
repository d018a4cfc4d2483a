"""What the graph tests (test_layer_graphs.py, test_kept_layer_graphs.py) share: a CPU stand-in for
a captured CUDA graph, the small GPU Llama they train, and the check against eager training."""

import torch

from tests.kernels.tiny_models import build_base, with_lora
from tests.kernels.tolerances import check_model


class ReplayedBody:
    """A stand-in for a captured CUDA graph on the CPU: replaying runs the captured body again. The
    body reads and writes only the static buffers, as a real graph's kernels do, so this checks
    everything around the capture: buffers, gradients bound to their kept tensors, adapter casts."""

    def __init__(self, body):
        self.body, self.replays = body, 0

    def replay(self):
        self.replays += 1
        self.body()


def gpu_lora_llama(layers: int, nf4_dir=None):
    """A small bf16 (or NF4, with ``nf4_dir``) LoRA Llama on the GPU with tuitune's kernels applied."""
    from tuitune.trainer.patching import apply_kernels

    base = build_base("llama", dtype=torch.bfloat16, nf4_dir=nf4_dir, num_hidden_layers=layers, hidden_size=512,
                      intermediate_size=1536, num_attention_heads=8, num_key_value_heads=4, vocab_size=2048,
                      max_position_embeddings=1024)
    model = with_lora(base, "llama").to("cuda").train()
    assert apply_kernels(model).supported
    return model


def check_trains_like_eager(graphed_losses, eager_losses, graphed_adapters=None, eager_adapters=None) -> None:
    """Per-step losses (and, when given, the final adapters) of graphed training match eager training's."""
    for a, b in zip(graphed_losses, eager_losses):
        check_model("checkpointing.graphs.steps", torch.tensor(a), torch.tensor(b), torch.bfloat16)
    for name, value in (eager_adapters or {}).items():
        check_model("checkpointing.graphs.adapters", graphed_adapters[name], value, torch.bfloat16)
