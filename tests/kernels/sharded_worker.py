"""One rank of tests/kernels/test_sharded_kernels.py: a tiny LoRA or QLoRA Llama with tuitune's kernels,
sharded on gloo by FSDP2 (each decoder layer its own unit, then the root, as Accelerate's FSDP2 does
with transformer_layer_cls_to_wrap) or by DeepSpeed ZeRO-3 (every parameter partitioned, none kept
whole), trained a few steps on this rank's share of one batch.

Runs on CPU tensors under Triton's interpreter on any machine (two ranks cannot share one GPU under
NCCL): a rank's entry, ``train``, sets the switches before it imports tuitune's kernels or deepspeed.
Not at import: the test's own process imports this module too, and there the switch would give
every later kernel test the interpreter's settings."""

from __future__ import annotations

import json
import os
import sys

import torch  # noqa: E402

from tests.kernels.tiny_models import batch, build_base, with_lora  # noqa: E402

STEPS = 4
ROWS = 4  # the global batch; rows have no padding or masked prompt, so the ranks' mean loss is the batch's
LR = 1e-2


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
            if hasattr(p, "ds_numel"):  # ZeRO-3: this rank's partition of the flattened parameter
                whole += p.ds_numel
                local += p.ds_tensor.numel()
            else:
                whole += p.numel()
                local += p.to_local().numel() if hasattr(p, "to_local") else p.numel()
    return local / whole


def _zero3(model, world: int):
    """(engine, its backward, its step) for ZeRO-3 with torch AdamW."""
    import deepspeed

    config = {"train_micro_batch_size_per_gpu": ROWS // world, "gradient_accumulation_steps": 1,
              "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
              "optimizer": {"type": "AdamW", "params": {"lr": LR, "torch_adam": True}}}
    engine, *_ = deepspeed.initialize(model=model, config=config,
                                      model_parameters=[p for p in model.parameters() if p.requires_grad])
    return engine, engine.backward, engine.step


def _fsdp2(model):
    from torch.distributed.fsdp import fully_shard

    for layer in model.base_model.model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    return _plain(model)


def _plain(model):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)

    def step():
        optimizer.step()
        optimizer.zero_grad()

    return model, lambda loss: loss.backward(), step


def train(rank: int, world: int, port: int, engine: str, nf4_dir: str | None, out: str) -> None:
    os.environ["TRITON_INTERPRET"] = "1"  # before the first import of a Triton kernel
    os.environ["DS_ACCELERATOR"] = "cpu"  # before deepspeed's first import
    import torch.distributed as dist

    from tuitune.trainer.patching import apply_kernels

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model = with_lora(load_base(nf4_dir), "llama")
    model.train()
    report = apply_kernels(model, allow_cpu=True)
    assert report.supported, report.reason
    wrapped, backward, step = {"fsdp2": _fsdp2, "zero3": lambda m: _zero3(m, world), "none": _plain}[engine](model)
    rows = batch(rows=ROWS)
    rows["attention_mask"][:] = 1
    rows["labels"] = rows["input_ids"].clone()
    share = slice(rank * ROWS // world, (rank + 1) * ROWS // world)
    losses = []
    for _ in range(STEPS):
        loss = wrapped(**{k: v[share] for k, v in rows.items()}).loss
        backward(loss)
        step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / world)
    fused, total = fused_projections(model)
    result = {"rank": rank, "losses": losses, "fused": fused, "projections": total,
              "sharded_fraction": sharded_fraction(model)}
    with open(os.path.join(out, f"rank-{rank}.json"), "w") as f:
        json.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()
    # The result is on disk; skip the interpreter's teardown. Under ZeRO-3 a rank spawned after an FSDP2 pair
    # aborted there ("terminate called without an active exception", SIGABRT) in 1 of 7 runs on the 2-core
    # machine, after its work was done. The product's ranks are torchrun's and are checked to finish cleanly
    # by tests/trainer/test_distributed.py.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
