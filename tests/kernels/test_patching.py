"""Patched and stock models give the same loss, logits and LoRA gradients, for every architecture."""

import pytest
import torch

from tests.kernels.kernel_env import ON_GPU
from tests.kernels.tiny_models import CONFIGS, batch, build_base, dequantized_twin, with_lora
from tests.kernels.tolerances import check_model
from tuitune.trainer.patching import PatchReport, apply_kernels


def _loss_and_grads(model, inputs):
    model.zero_grad(set_to_none=True)
    out = model(**inputs)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.loss.detach(), grads


def _pair(arch, dtype, tmp_path, nf4):
    device = "cuda" if ON_GPU else "cpu"
    stock_base = build_base(arch, dtype, nf4_dir=(tmp_path / "a") if nf4 else None)
    # NF4: the reference is the stock model computing with the very weights the NF4 storage decodes to
    stock = with_lora(dequantized_twin(stock_base) if nf4 else stock_base, arch).to(device)
    ours = with_lora(build_base(arch, dtype, nf4_dir=(tmp_path / "b") if nf4 else None), arch).to(device)
    return stock, ours, device


@pytest.mark.parametrize("arch", list(CONFIGS))
@pytest.mark.parametrize("nf4", [False, True], ids=["dense", "nf4"])
def test_patched_model_matches_stock(arch, nf4, tmp_path):
    dtype = torch.float32
    stock, ours, device = _pair(arch, dtype, tmp_path, nf4)
    report = apply_kernels(ours, allow_cpu=True)
    assert isinstance(report, PatchReport) and report.supported and report.architecture == arch
    assert report.replaced["attention"] == 2 and report.replaced["mlp"] == 2
    assert report.replaced["rms_norm"] >= 5 and report.replaced["causal_lm_loss"] == 1
    inputs = batch(device=device)
    stock.train(), ours.train()
    loss_s, grads_s = _loss_and_grads(stock, inputs)
    loss_o, grads_o = _loss_and_grads(ours, inputs)
    tag = f"model.{arch}.{'nf4' if nf4 else 'dense'}"
    check_model(f"{tag}.loss", loss_o, loss_s, dtype)
    assert grads_s.keys() == grads_o.keys() and len(grads_s) > 0
    for name in grads_s:
        check_model(f"{tag}.lora_grad", grads_o[name], grads_s[name], dtype)
    # no labels: the stock head runs on top of the patched layers (generation path)
    with torch.no_grad():
        ours.eval(), stock.eval()
        plain = {k: v for k, v in inputs.items() if k != "labels"}
        check_model(f"{tag}.logits", ours(**plain).logits, stock(**plain).logits, dtype)


def test_bf16_llama_matches_stock(tmp_path):
    stock, ours, device = _pair("llama", torch.bfloat16, tmp_path, False)
    apply_kernels(ours, allow_cpu=True)
    inputs = batch(device=device)
    loss_s, grads_s = _loss_and_grads(stock, inputs)
    loss_o, grads_o = _loss_and_grads(ours, inputs)
    check_model("model.llama.bf16.loss", loss_o, loss_s, torch.bfloat16)
    for name in grads_s:
        check_model("model.llama.bf16.lora_grad", grads_o[name], grads_s[name], torch.bfloat16)


def test_fused_lm_head_outputs_match_trl_contract(tmp_path):
    stock, ours, device = _pair("gemma2", torch.float32, tmp_path, False)
    apply_kernels(ours, allow_cpu=True)
    inputs = batch(device=device)
    out = ours(**inputs, fused_lm_head=True)
    ref = stock(**inputs)
    check_model("model.fused_head.loss", out.loss, ref.loss, torch.float32)
    logits = stock(**{k: v for k, v in inputs.items() if k != "labels"}).logits[:, :-1]
    softcap = stock.config.final_logit_softcapping
    logp = (softcap * torch.tanh(logits / softcap)).log_softmax(-1)
    target = inputs["labels"][:, 1:]
    mask = target != -100
    expected = logp.gather(-1, target.clamp(min=0)[..., None])[..., 0] * mask
    assert torch.equal(out.label_mask, mask)
    check_model("model.fused_head.log_probs", out.log_probs, expected, torch.float32)
    assert torch.equal(out.is_top1, (logits.argmax(-1) == target) & mask)
    # num_items_in_batch (gradient accumulation across micro-batches) divides the summed loss
    n = torch.tensor(40)
    check_model("model.fused_head.loss_n", ours(**inputs, num_items_in_batch=n).loss,
                stock(**inputs, num_items_in_batch=n).loss, torch.float32)


def test_unsupported_architecture_is_left_alone():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    before = {n: m.forward for n, m in model.named_modules()}
    report = apply_kernels(model, allow_cpu=True)
    assert not report.supported and report.architecture == "gpt2" and "gpt2" in report.reason
    assert report.replaced == {}
    assert all(m.forward == before[n] for n, m in model.named_modules())


def test_apply_kernels_is_idempotent(tmp_path):
    device = "cuda" if torch.cuda.is_available() else "cpu"  # allow_cpu only counts under the interpreter
    model = with_lora(build_base("llama").to(device), "llama")
    first = apply_kernels(model, allow_cpu=True)
    second = apply_kernels(model, allow_cpu=True)
    assert first.replaced and second.supported and second.replaced == {}


def test_fused_head_survives_trl_wrapping_when_applied_after(tmp_path):
    """SFTTrainer.__init__ wraps the model's forward with TRL's own fused head; calling apply_kernels
    after building the trainer puts ours back (the layers stay patched either way)."""
    from trl.trainer.utils import add_fused_lm_head

    stock, ours, device = _pair("llama", torch.float32, tmp_path, False)
    first = apply_kernels(ours, allow_cpu=True)
    add_fused_lm_head(ours.get_base_model(), outputs=("log_probs", "entropy", "is_top1"))
    again = apply_kernels(ours, allow_cpu=True)
    assert first.replaced["causal_lm_loss"] == 1 and again.replaced == {"causal_lm_loss": 1}
    inputs = batch(device=device)
    out = ours(**inputs, fused_lm_head=True)
    assert type(out).__name__ == "FusedLMOutput"
    check_model("model.after_trl.loss", out.loss, stock(**inputs).loss, torch.float32)


@pytest.mark.skipif(ON_GPU, reason="about models on the CPU")
def test_cpu_model_stays_on_the_stock_path_by_default():
    model = with_lora(build_base("llama"), "llama")
    report = apply_kernels(model)
    assert not report.supported and "CUDA GPU" in report.reason and report.replaced == {}
    assert "forward" not in model.get_base_model().__dict__


def test_a_disabled_adapter_keeps_the_fused_path_and_equals_the_base_model(tmp_path):
    """DPO's reference is the policy with its adapter disabled: it runs on the fused kernels as a base-only
    projection (the same base GEMMs as the policy, so equal weights give equal log-probs) and equals the
    stock base model."""
    from tuitune.trainer.patching import lora_weights_of

    device = "cuda" if ON_GPU else "cpu"
    stock = build_base("llama", torch.float32).to(device)
    ours = with_lora(build_base("llama", torch.float32), "llama").to(device)
    apply_kernels(ours, allow_cpu=True)
    q = ours.base_model.model.model.layers[0].self_attn.q_proj
    inputs = batch(device=device)
    with torch.no_grad():
        adapted = ours(**inputs).loss
        with ours.disable_adapter():
            weights = lora_weights_of(q)
            assert weights is not None and weights.lora_a is None
            assert weights.weight is q.get_base_layer().weight
            reference = ours(**inputs).loss
        check_model("model.llama.disabled_adapter.loss", reference, stock(**inputs).loss, torch.float32)
    assert lora_weights_of(q).lora_a is q.lora_A["default"].weight
    assert abs(float(adapted) - float(reference)) > 1e-4  # the random B made the adapter matter
