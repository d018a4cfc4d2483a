"""A plain LoRA training loop for convergence comparisons: same seed, same data, same optimizer,
with and without tuitune's kernels; returns the per-step losses."""

from __future__ import annotations

import json
import os

import torch

# Per-step training losses of the two runs must satisfy |stock - kernels| <= ATOL + RTOL * stock,
# per dtype (ATOL, RTOL). The relative part covers the steep memorisation phase, where rounding
# differences (summation order) grow over tens of optimizer steps: SmolLM2 in float32 agreed to
# 4e-4 for 28 steps, then by up to 4.9e-3 at a loss of 0.35 (1.4%).
LOSS_TOLERANCE = {torch.float32: (2e-3, 2e-2), torch.bfloat16: (5e-2, 5e-2)}


def token_batches(vocab: int, rows: int, seq: int, n_batches: int, seed: int = 0, device="cpu"):
    """Fixed random token sequences (with a padded tail and a masked prompt): a memorisation task
    whose loss falls steadily from the first step."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(3, vocab, (rows, seq), generator=g)
        mask = torch.ones_like(ids)
        mask[-1, -seq // 8:] = 0
        labels = ids.masked_fill(mask == 0, -100)
        labels[:, : seq // 8] = -100
        out.append({"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)})
    return out


def lora(model, rank: int = 16, targets=None, seed: int = 3407):
    from peft import LoraConfig, get_peft_model

    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(seed)
    targets = targets or ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=targets,
                                            task_type="CAUSAL_LM"))


def train_losses(model, batches, steps: int, lr: float = 2e-4, autocast_dtype=None) -> list[float]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    model.train()
    losses = []
    device_type = next(model.parameters()).device.type
    for step in range(steps):
        inputs = batches[step % len(batches)]
        with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if os.environ.get("CONVERGENCE_PROGRESS"):
            print(f"step {step + 1}: loss {losses[-1]:.6f}", flush=True)
    return losses


def compare(name: str, stock: list[float], kernels: list[float], dtype: torch.dtype) -> float:
    """Assert the two loss curves agree step by step; records the result when CONVERGENCE_JSON is set."""
    diffs = [abs(a - b) for a, b in zip(stock, kernels)]
    worst = max(diffs)
    path = os.environ.get("CONVERGENCE_JSON")
    if path:
        rec = {"name": name, "dtype": str(dtype).removeprefix("torch."), "steps": len(stock),
               "max_abs_loss_diff": worst, "first_loss": stock[0], "last_loss_stock": stock[-1],
               "last_loss_kernels": kernels[-1]}
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")
    print(f"{name}: max |loss diff| over {len(stock)} steps = {worst:.3e} (stock {stock[0]:.4f} -> {stock[-1]:.4f}, "
          f"kernels {kernels[0]:.4f} -> {kernels[-1]:.4f})")
    assert stock[-1] < stock[0] - 0.1, f"{name}: the stock run did not learn ({stock[0]:.3f} -> {stock[-1]:.3f})"
    atol, rtol = LOSS_TOLERANCE[dtype]
    bad = [(i + 1, a, b) for i, (a, b) in enumerate(zip(stock, kernels)) if abs(a - b) > atol + rtol * abs(a)]
    assert not bad, f"{name}: steps off by more than {atol} + {rtol} x loss: {bad[:5]} (max |diff| {worst:.3e})"
    return worst
