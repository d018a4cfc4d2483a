"""The `llama-1b` bench shape (hidden 2048, intermediate 8192, 16 layers, 32 heads, 8 KV heads,
vocabulary 128256, tied embeddings) with random weights, NF4 base (double quantization, bf16
compute) and LoRA r16: 50 steps with and without tuitune's kernels. GPU only."""

import warnings

import pytest
import torch

from tests.convergence.convergence_loop import compare, lora, token_batches, train_losses
from tuitune.trainer.patching import apply_kernels

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _llama_1b_nf4():
    import bitsandbytes as bnb
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True,
                         max_position_embeddings=4096, rope_theta=500000.0, pad_token_id=0)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.Linear):
                    q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=False,
                                          compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4")
                    q.weight = bnb.nn.Params4bit(child.weight.data.cpu(), requires_grad=False, quant_type="nf4",
                                                 compress_statistics=True)
                    setattr(parent, name, q.cuda())
    return model


@pytest.mark.parametrize("kept_dequantized", [False, True], ids=["dequantized-per-use", "dequantized-once"])
def test_llama_1b_qlora_converges_the_same_with_kernels(kept_dequantized):
    """With kept_dequantized (training.dequantize_once) the kernels read a kept copy of each
    dequantized weight instead of dequantizing it at every use; the losses must still follow stock's."""
    from tuitune.trainer.dequantized_weights import keep_base_weights_dequantized

    batches = token_batches(128256, rows=2, seq=512, n_batches=2, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stock = train_losses(lora(_llama_1b_nf4()), batches, steps=50, lr=1e-3)
        torch.cuda.empty_cache()
        model = lora(_llama_1b_nf4())
        report = apply_kernels(model, allow_cpu=True)
        assert report.supported and report.replaced["mlp"] == 16, report
        if kept_dequantized:
            said = keep_base_weights_dequantized(model, torch.bfloat16)
            assert said.startswith("112 4-bit base weights kept dequantized in bfloat16"), said
        kernels = train_losses(model, batches, steps=50, lr=1e-3)
    label = "llama-1b QLoRA (NF4, bf16) LoRA r16" + (", base weights kept dequantized" if kept_dequantized else "")
    compare(label, stock, kernels, torch.bfloat16)
