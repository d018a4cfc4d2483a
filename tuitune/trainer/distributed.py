"""One rank of a run on several GPUs or machines: what the recipe does differently there.

torchrun starts the ranks (tuitune.trainer.rank_main); the Trainer (Accelerate underneath) sets up DDP,
FSDP2 or DeepSpeed from the arguments given here. This module only wires: the rank's device, 4-bit
storage for sharding, the Trainer's engine arguments, rank 0 alone writing the run (events,
checkpoints, adapter), and the controls rank 0 reads broadcast to every rank at each step. Outside
torchrun, `current(config)` is a one-process context and every method leaves the recipe as it is.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from tuitune import distributed_plan as dp
from tuitune.config import Config
from tuitune.errors import TuituneError
from tuitune.plan import Plan
from tuitune.runs import RunDir
from tuitune.trainer.callback import HF_CHECKPOINT_PREFIX, EventsCallback
from tuitune.trainer.event_sink import EventSink

_CONTROL_GROUP: Any = None  # a gloo group for control messages (no GPU stream sync per step)


@dataclass(frozen=True)
class RankContext:
    mode: str = "none"
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    node_rank: int = 0

    @property
    def active(self) -> bool:
        """Whether this process is a rank started by torchrun for a distributed mode."""
        return self.mode != "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---------------------------------------------------------------- the plan and the model
    def adjust_plan(self, plan: Plan) -> Plan:
        if not self.active:
            return plan
        optimizer, note = dp.optimizer_for(self.mode, plan.optimizer)
        notes = plan.notes + ((note,) if note else ())
        return dataclasses.replace(plan, optimizer=optimizer, notes=notes)

    def device_map(self, plan: Plan) -> dict[str, int] | None:
        """Where from_pretrained puts the weights: this rank's GPU (ZeRO-3 partitions them itself)."""
        if plan.device != "cuda":
            return None
        if self.mode == "zero3":
            return None
        return {"": self.local_rank}

    def quantization_kwargs(self, dtype) -> dict[str, Any]:
        """4-bit weights stored in the compute dtype, so FSDP2 and ZeRO-3 can shard them like the rest."""
        return {"bnb_4bit_quant_storage": dtype} if dp.needs_quant_storage(self.mode) else {}

    def data_cache(self, path: Path) -> Path:
        """Each rank tokenizes into its own folder (they start at the same moment)."""
        return path / f"rank-{self.rank}" if self.active else path

    def trainer_kwargs(self, model, plan: Plan) -> dict[str, Any]:
        """Engine arguments for the Trainer: collective timeout, backend, FSDP2 or DeepSpeed."""
        if not self.active:
            return {}
        kwargs: dict[str, Any] = {"ddp_timeout": dp.COLLECTIVE_TIMEOUT_S, "ddp_find_unused_parameters": False,
                                  "ddp_backend": "gloo" if plan.device == "cpu" else "nccl"}
        if self.mode == "fsdp":
            layers = list(getattr(model, "_no_split_modules", None) or [])
            kwargs.update(fsdp=True, fsdp_config=dp.fsdp_config(layers))
        elif self.mode in dp.DEEPSPEED:
            kwargs["deepspeed"] = dp.deepspeed_config(self.mode)
        return kwargs

    def events_callback(self, config: Config, *args, **kwargs) -> EventsCallback:
        """The recipe's EventsCallback; on a rank, the one that keeps every rank in step."""
        if not self.active:
            return EventsCallback(*args, **kwargs)
        return RankEventsCallback(*args, rank=self, layout=dp.layout_of(config), **kwargs)

    # ---------------------------------------------------------------- the adapter
    def save_adapter(self, trainer, tokenizer, config: Config, run: RunDir,
                     save_single: Callable[..., Path]) -> Path:
        """The final adapter. One process: `save_single` as always. Several: every rank takes part in the
        Trainer's save (FSDP2 and ZeRO-3 gather the shards), rank 0 writes the folder."""
        if not self.active:
            return save_single(trainer.model, tokenizer, config, run)
        staged = run.path / ".hf" / "adapter-gathered"
        trainer.save_model(str(staged))
        barrier()
        target = run.adapter_dir
        if self.is_main:
            target = save_single(_StagedAdapter(staged), tokenizer, config, run)
        barrier()
        return target


def engine_in_use(trainer) -> str:
    """The mode (ddp, fsdp, zero2, zero3, none) of the engine that wraps `trainer`'s model once the
    Trainer prepared it; "fsdp1" for Accelerate's older FSDP."""
    wrapped = getattr(trainer, "model_wrapped", None)
    stage = getattr(wrapped, "zero_optimization_stage", None)
    if callable(stage):
        return f"zero{stage()}"
    accelerator = getattr(trainer, "accelerator", None)
    if accelerator is not None and getattr(accelerator, "is_fsdp2", False):
        return "fsdp"
    if accelerator is not None and str(getattr(accelerator.state, "distributed_type", "")).endswith("FSDP"):
        return "fsdp1"
    from torch.nn.parallel import DistributedDataParallel

    return "ddp" if isinstance(wrapped, DistributedDataParallel) else "none"


class _StagedAdapter:
    """Stands for the model in the recipe's `save_adapter`: its files were written by the Trainer."""

    def __init__(self, folder: Path):
        self.folder = folder

    def save_pretrained(self, target: str) -> None:
        shutil.copytree(self.folder, target, dirs_exist_ok=True)


def current(config: Config) -> RankContext:
    """This process's place in the run, from torchrun's environment; one process outside torchrun."""
    if config.training.distributed == "none" or "RANK" not in os.environ:
        return RankContext()
    env = os.environ
    return RankContext(config.training.distributed, int(env["RANK"]), int(env.get("LOCAL_RANK", 0)),
                       int(env.get("WORLD_SIZE", 1)), int(env.get("GROUP_RANK", 0)))


# -------------------------------------------------------------------- collectives (all time-limited)


def _initialized() -> bool:
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def control_group():
    """A gloo process group for control messages, made on first use by every rank at once."""
    global _CONTROL_GROUP
    import torch.distributed as dist

    if _CONTROL_GROUP is None:
        _CONTROL_GROUP = dist.new_group(backend="gloo", timeout=timedelta(seconds=dp.COLLECTIVE_TIMEOUT_S))
    return _CONTROL_GROUP


def barrier() -> None:
    if _initialized():
        import torch.distributed as dist

        dist.barrier(group=control_group())


def broadcast(value: Any) -> Any:
    """Rank 0's `value` on every rank."""
    if not _initialized():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0, group=control_group())
    return box[0]


def all_true(flag: bool) -> bool:
    if not _initialized():
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MIN, group=control_group())
    return bool(value.item())


# -------------------------------------------------------------------- events and controls on ranks


class SilentSink(EventSink):
    """The event sink of ranks other than 0: their text goes to train.log, never to events.jsonl."""

    def __init__(self, run: RunDir, rank: int):
        super().__init__(run, None)
        self.rank = rank

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        from tuitune import events as ev

        event = ev.make(type_, **fields)
        if type_ in (ev.WARNING, ev.LOG) and fields.get("level") != "info":
            print(f"rank {self.rank}: {fields.get('text')}", flush=True)
        return event


class BroadcastInbox:
    """Controls as rank 0 reads them (queue-less: the launcher copies the UI's into controls.jsonl),
    handed to every rank, so that all ranks pause, save and stop at the same step."""

    def __init__(self, inbox, rank: int):
        self.inbox = inbox
        self.rank = rank

    def drain(self) -> list[str]:
        commands = self.inbox.drain() if self.rank == 0 else []
        return list(broadcast(commands))


class RankEventsCallback(EventsCallback):
    """EventsCallback for one rank: commands come through the broadcast inbox; checkpoints are promoted by
    rank 0 once every rank has written its part; a signal to a rank other than 0 is not a command."""

    def __init__(self, *args, rank: RankContext | None = None, layout: dp.Layout | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.rank = rank or RankContext()
        self.samples_per_step *= self.rank.world_size  # every rank's batches make one optimizer step
        self.layout = layout
        self._finite = True
        self._synchronized = False

    def on_train_begin(self, args, state, control, **kwargs):
        self._check_engine()
        return super().on_train_begin(args, state, control, **kwargs)

    def _check_engine(self) -> None:
        """Say which engine trains, as the Trainer set it up; fail (on every rank) when it is not the
        mode asked for, rather than train on another engine unnoticed."""
        running = engine_in_use(self.trainer)
        if running != self.rank.mode and self.rank.world_size > 1:
            what = "no distributed engine" if running == "none" else dp.ENGINE.get(running, running)
            raise TuituneError(f"training.distributed = {self.rank.mode} asked for {dp.ENGINE[self.rank.mode]} on "
                               f"{self.rank.world_size} ranks, but the Trainer set up {what}. Check the installed "
                               "accelerate (and deepspeed) against tuitune's requirements, or pick another mode.")
        if self.rank.is_main:
            self.sink.log(f"Engine: {dp.ENGINE.get(running, running)} on {self.rank.world_size} "
                          f"rank{'s' if self.rank.world_size != 1 else ''}.")

    def on_step_end(self, args, state, control, **kwargs):
        self._synchronized = True
        try:
            return super().on_step_end(args, state, control, **kwargs)
        finally:
            self._synchronized = False

    def _signal_commands(self, state) -> list[str]:
        return super()._signal_commands(state) if self.rank.is_main else []

    def save_checkpoint_now(self, state) -> None:
        if not self._synchronized:  # e.g. after one rank ran out of memory: the others are elsewhere
            raise RuntimeError("a checkpoint of a run on several ranks needs every rank at the same step; "
                               "the newest periodic checkpoint stands")
        super().save_checkpoint_now(state)

    def _weights_finite(self) -> bool:
        return self._finite

    def on_save(self, args, state, control, **kwargs):
        self._finite = all_true(self._local_weights_finite())
        source = Path(args.output_dir) / f"{HF_CHECKPOINT_PREFIX}{state.global_step}"
        barrier()  # every rank has written its part of the checkpoint
        if self.rank.is_main:
            if source.exists() and self.layout is not None:
                (source / dp.CHECKPOINT_META).write_text(json.dumps(dp.checkpoint_meta(self.layout)),
                                                         encoding="utf-8")
            control = super().on_save(args, state, control, **kwargs)
        elif not self._finite:
            control.should_training_stop = True
            if self.fault is None:
                self.fault = {"what": "adapter weights", "value": float("nan"), "step": state.global_step}
        barrier()
        if not self.rank.is_main and self.rank.node_rank > 0 and self.rank.local_rank == 0:
            shutil.rmtree(source, ignore_errors=True)  # this machine's own run folder: node 0 keeps the run
        return control

    def _local_weights_finite(self) -> bool:
        model = getattr(self.trainer, "model", None)
        if model is None:
            return True
        import torch

        with torch.no_grad():
            for p in model.parameters():
                if not p.requires_grad:
                    continue
                local = p.to_local() if hasattr(p, "to_local") else p
                if local.numel() and not bool(torch.isfinite(local).all()):
                    return False
        return True
