"""DPO and ORPO with tuitune's kernels score sequences through the fused linear cross-entropy (no full
logits) and follow the stock path's loss curve: TRL's own fused LM head, as its DPO trainer installs it,
against the same head replaced by tuitune's (`apply_kernels`, as the trainer calls it after building TRL's
trainer). The loss is TRL's: DPO's sigmoid loss with the adapter-disabled model as the reference, and
ORPO through tuitune.trainer.orpo's fused-head forward."""

import torch
import torch.nn.functional as F

from tests.convergence.convergence_loop import compare, lora
from tuitune.trainer.patching import apply_kernels

ON_GPU = torch.cuda.is_available()
VOCAB = 49152 if ON_GPU else 4096
BETA = 0.1


def _model(device):
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    config = LlamaConfig(vocab_size=VOCAB, hidden_size=96, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, pad_token_id=0)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(device)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    return lora(model)


def _pairs(device, rows=2, prompt=16, reply=24, seed=0):
    """A batch as TRL's DPO collator makes it: chosen rows then rejected rows, prompt masked."""
    g = torch.Generator().manual_seed(seed)
    head = torch.randint(3, VOCAB, (rows, prompt), generator=g)
    chosen = torch.cat([head, torch.randint(3, VOCAB, (rows, reply), generator=g)], 1)
    rejected = torch.cat([head, torch.randint(3, VOCAB, (rows, reply), generator=g)], 1)
    ids = torch.cat([chosen, rejected])
    mask = torch.ones_like(ids)
    mask[:, :prompt] = 0
    return ids.to(device), mask.to(device)


def _sequence_logps(model, ids, completion):
    labels = ids.masked_fill(completion == 0, -100)
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels, fused_lm_head=True)
    return out.log_probs[:, -(ids.shape[1] - 1):].sum(1), out


def dpo_losses(model, steps, device, lr=2e-3):
    ids, completion = _pairs(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses, margins = [], []
    for _ in range(steps):
        logps, _ = _sequence_logps(model, ids, completion)
        with torch.no_grad(), model.disable_adapter():
            ref, _ = _sequence_logps(model, ids, completion)
        chosen, rejected = (logps - ref).chunk(2)
        loss = -F.logsigmoid(BETA * (chosen - rejected)).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        margins.append(float(BETA * (chosen - rejected).detach().mean()))
    return losses, margins


def test_dpo_with_kernels_follows_the_stock_path_without_full_logits():
    device = "cuda" if ON_GPU else "cpu"
    stock, stock_margins = dpo_losses(_model(device), 12, device)
    model = _model(device)
    report = apply_kernels(model, allow_cpu=True)
    assert report.supported and report.replaced.get("causal_lm_loss") == 1, report
    ids, completion = _pairs(device)
    with torch.no_grad():
        _, ours = _sequence_logps(model, ids, completion)
        stock_model = _model(device)
        _, theirs = _sequence_logps(stock_model, ids, completion)
    assert getattr(ours, "logits", None) is None  # per-token log-probs only
    mask = ours.label_mask if ours.label_mask is not None else completion[:, 1:].bool()
    torch.testing.assert_close(ours.log_probs[mask], theirs.log_probs[:, -mask.shape[1]:][mask], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.mean_logits[mask], theirs.mean_logits[:, -mask.shape[1]:][mask],
                               atol=1e-4, rtol=1e-4)
    kernels, kernel_margins = dpo_losses(model, 12, device)
    assert stock_margins[0] == 0.0 and stock_margins[-1] > 0.5
    assert kernel_margins[0] == 0.0, "the reference pass (adapter disabled) must take the policy's own base path"
    compare("tiny-llama fp32 DPO (sigmoid) LoRA r16", stock, kernels, torch.float32)


def test_orpo_forward_with_kernels_equals_the_stock_fused_head():
    from types import SimpleNamespace

    from tuitune.trainer.orpo import FusedHeadORPOTrainer

    device = "cuda" if ON_GPU else "cpu"
    ids, completion = _pairs(device)
    chosen, rejected = ids.chunk(2)
    labels = ids.masked_fill(completion == 0, -100)
    batch = {"chosen_input_ids": chosen, "rejected_input_ids": rejected,
             "chosen_attention_mask": torch.ones_like(chosen), "rejected_attention_mask": torch.ones_like(rejected),
             "chosen_labels": labels[:2], "rejected_labels": labels[2:]}
    stub = SimpleNamespace(is_encoder_decoder=False, padding_value=0, aux_loss_enabled=False,
                           accelerator=SimpleNamespace(device=torch.device(device)),
                           concatenated_inputs=FusedHeadORPOTrainer.concatenated_inputs)
    results = []
    for patched in (False, True):
        model = _model(device)
        if patched:
            assert apply_kernels(model, allow_cpu=True).supported
        out = FusedHeadORPOTrainer.concatenated_forward(stub, model, batch)
        (out[4] - out[0].mean() + out[1].mean()).backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
        results.append((out, grads))
    (stock, stock_grads), (ours, our_grads) = results
    for i in (0, 1, 4):  # mean reply log-probs (chosen, rejected) and the chosen NLL
        torch.testing.assert_close(ours[i], stock[i], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(our_grads, stock_grads, atol=1e-6, rtol=1e-4)
