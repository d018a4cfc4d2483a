"""One rank of tests/kernels/test_fsdp2.py: a tiny LoRA or QLoRA Llama with tuitune's kernels, sharded
by FSDP2 (each decoder layer its own unit, then the root, as Accelerate's FSDP2 does with
transformer_layer_cls_to_wrap) on gloo, trained a few steps on this rank's share of one batch.

Runs on CPU tensors under Triton's interpreter on any machine (two ranks cannot share one GPU under
NCCL), so the switch is set before anything imports triton."""

from __future__ import annotations

import json
import os

os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

from tests.kernels.tiny_models import batch, build_base, with_lora  # noqa: E402

STEPS = 4
ROWS = 4  # the global batch; rows have no padding or masked prompt, so the ranks' mean loss is the batch's


def load_base(nf4_dir: str | None):
    """The tiny Llama; with `nf4_dir` (its saved float weights), reloaded in NF4 with the 4-bit bytes
    stored as float32, the compute dtype, which is what lets FSDP2 shard them (training.distributed
    = fsdp asks for the same through bnb_4bit_quant_storage)."""
    if nf4_dir is None:
        return build_base("llama")
    import warnings

    import transformers

    q = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                        bnb_4bit_compute_dtype=torch.float32, bnb_4bit_quant_storage=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoModelForCausalLM.from_pretrained(nf4_dir, quantization_config=q, dtype=torch.float32)


def fused_projections(model) -> tuple[int, int]:
    """(projections whose last forward took the fused path, LoRA projections) on this rank."""
    fused = total = 0
    for module in model.modules():
        if hasattr(module, "lora_A") and hasattr(module, "base_layer"):
            total += 1
            kept = module.__dict__.get("_tuitune_lora_weights")
            fused += kept is not None and kept[1] is not None
    return fused, total


def sharded_fraction(model) -> float:
    """The share of the frozen base weights' elements this rank holds (1.0: not sharded)."""
    local = whole = 0
    for name, p in model.named_parameters():
        if "base_layer" in name:
            whole += p.numel()
            local += p.to_local().numel() if hasattr(p, "to_local") else p.numel()
    return local / whole


def train(rank: int, world: int, port: int, nf4_dir: str | None, out: str) -> None:
    import torch.distributed as dist

    from tuitune.trainer.patching import apply_kernels

    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    model = with_lora(load_base(nf4_dir), "llama")
    model.train()
    report = apply_kernels(model, allow_cpu=True)
    assert report.supported, report.reason
    if world > 1:
        from torch.distributed.fsdp import fully_shard

        for layer in model.base_model.model.model.layers:
            fully_shard(layer)
        fully_shard(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    rows = batch(rows=ROWS)
    rows["attention_mask"][:] = 1
    rows["labels"] = rows["input_ids"].clone()
    share = slice(rank * ROWS // world, (rank + 1) * ROWS // world)
    losses = []
    for _ in range(STEPS):
        loss = model(**{k: v[share] for k, v in rows.items()}).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        mean = loss.detach().clone()
        if world > 1:
            dist.all_reduce(mean)
        losses.append(mean.item() / world)
    fused, total = fused_projections(model)
    result = {"rank": rank, "losses": losses, "fused": fused, "projections": total,
              "sharded_fraction": sharded_fraction(model)}
    with open(os.path.join(out, f"rank-{rank}.json"), "w") as f:
        json.dump(result, f)
    if world > 1:
        dist.destroy_process_group()
