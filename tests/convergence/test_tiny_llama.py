"""50 LoRA steps of a tiny random Llama (2 layers) with and without tuitune's kernels, from the
same seed on the same data: the loss curves must agree. On the GPU it has SmolLM2's real
49152-token vocabulary; under the CPU interpreter a 4096-token one (the cross-entropy kernels
cost about a second per step there at full vocabulary)."""

import torch

from tests.convergence.convergence_loop import compare, lora, token_batches, train_losses
from tuitune.trainer.patching import apply_kernels

ON_GPU = torch.cuda.is_available()


VOCAB = 49152 if ON_GPU else 4096


def _tiny_llama(device):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=VOCAB, hidden_size=96, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, pad_token_id=0)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(device)


def test_tiny_llama_converges_the_same_with_kernels():
    device = "cuda" if ON_GPU else "cpu"
    batches = token_batches(VOCAB, rows=2, seq=64, n_batches=2, device=device)
    stock = train_losses(lora(_tiny_llama(device)), batches, steps=50, lr=1e-3)
    model = lora(_tiny_llama(device))
    report = apply_kernels(model, allow_cpu=True)
    assert report.supported, report.reason
    kernels = train_losses(model, batches, steps=50, lr=1e-3)
    compare("tiny-llama fp32 LoRA r16", stock, kernels, torch.float32)
