"""How a run spreads over GPUs and machines, decided without torch: the layout (ranks per machine,
machines, rendezvous), the torchrun command that starts the ranks, the DeepSpeed and FSDP2 settings
handed to the Trainer, what each mode changes (optimizer, kernels, 4-bit storage) and which
checkpoints a mode can resume. The engines themselves (torchrun, Accelerate, DeepSpeed) do the work.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuitune.config import Config
from tuitune.distributed_fields import parse_endpoint, parse_gpus
from tuitune.errors import TuituneError

RANK_MODULE = "tuitune.trainer.rank_main"  # what each rank runs
CHECKPOINT_META = "tuitune-distributed.json"  # the mode and world size a checkpoint was written with
SHARDED = ("fsdp", "zero3")          # modes that split the weights over the GPUs
DEEPSPEED = ("zero2", "zero3")
CPU_MODES = ("ddp", "zero2", "zero3")  # run on the CPU over gloo (DeepSpeed's CPU accelerator); FSDP2 needs GPUs
ENGINE = {"none": "one process", "ddp": "PyTorch DDP", "fsdp": "PyTorch FSDP2 (Accelerate)",
          "zero2": "DeepSpeed ZeRO-2", "zero3": "DeepSpeed ZeRO-3"}
COLLECTIVE_TIMEOUT_S = 600  # every collective of the run (the Trainer's and tuitune's) gives up after this


@dataclass(frozen=True)
class Layout:
    """Where the ranks of a run go."""

    mode: str                              # none | ddp | fsdp | zero2 | zero3
    nproc_per_node: int
    device_ids: tuple[int, ...] | None     # CUDA device ids on this machine (None: the first N)
    nnodes: int
    node_rank: int
    endpoint: tuple[str, int] | None       # node 0's host and port (None: this machine)

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @property
    def distributed(self) -> bool:
        """Whether the trainer becomes a launcher of ranks (any mode but none, even on one GPU)."""
        return self.mode != "none"

    def describe(self) -> str:
        machines = f" on {self.nnodes} machines (this is node {self.node_rank})" if self.nnodes > 1 else ""
        return (f"{ENGINE[self.mode]}: {self.world_size} rank{'s' if self.world_size != 1 else ''}, "
                f"{self.nproc_per_node} per machine{machines}")


def layout_of(config: Config) -> Layout:
    t = config.training
    count, ids = parse_gpus(t.gpus)
    endpoint = parse_endpoint(t.rdzv_endpoint) if t.rdzv_endpoint else None
    return Layout(t.distributed, count, ids, t.nnodes, t.node_rank, endpoint)


def torchrun_args(layout: Layout, run_path: str, resume_from: str | None, *, run_id: str) -> list[str]:
    """The arguments of `python -m torch.distributed.run` (torchrun) for one machine of the run.

    One machine: a private rendezvous on a free local port. Several: a static rendezvous at node 0's
    endpoint, this machine's rank given, as every machine's command says the same but its node_rank."""
    args = ["--nproc-per-node", str(layout.nproc_per_node), "--nnodes", str(layout.nnodes),
            "--max-restarts", "0", "--monitor-interval", "0.2"]
    if layout.nnodes > 1 or layout.endpoint is not None:
        host, port = layout.endpoint or ("127.0.0.1", 29500)
        args += ["--node-rank", str(layout.node_rank), "--master-addr", host, "--master-port", str(port)]
    else:
        args += ["--standalone"]
    args += ["--rdzv-id", run_id, "-m", RANK_MODULE, run_path]
    if resume_from:
        args += ["--resume", resume_from]
    return args


def command_text(args: list[str]) -> str:
    """The torchrun command a user could type for these arguments (shown in the run's log)."""
    return "torchrun " + shlex.join(args)


def rank_env(layout: Layout, visible: str | None = None, *, cpu: bool = False) -> dict[str, str]:
    """Environment for the ranks: the chosen devices, and no signal trapping by the elastic agent
    (tuitune's launcher turns SIGTERM/SIGINT into a stop with a checkpoint itself). Device ids are CUDA
    ordinals, so under an inherited CUDA_VISIBLE_DEVICES (`visible`) they pick from that list. A run on
    the CPU (`cpu`) tells DeepSpeed so, which otherwise takes any GPU it finds."""
    env = {"TORCHELASTIC_SIGNALS_TO_HANDLE": "SIGHUP,SIGQUIT", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    if cpu and layout.mode in DEEPSPEED:
        env["DS_ACCELERATOR"] = "cpu"
    if layout.device_ids is not None:
        inherited = [v.strip() for v in visible.split(",")] if visible else None
        env["CUDA_VISIBLE_DEVICES"] = ",".join(
            inherited[i] if inherited and i < len(inherited) else str(i) for i in layout.device_ids)
    return env


# ------------------------------------------------------------------ what each mode changes


def optimizer_for(mode: str, optimizer: str) -> tuple[str, str | None]:
    """The optimizer a mode trains with, and a note when it differs from the plan's."""
    if mode in ("fsdp", "zero2", "zero3") and optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        return "adamw_torch", (f"training.distributed = {mode} shards the optimizer state itself, which "
                               "bitsandbytes' 8-bit AdamW cannot hold: using torch AdamW.")
    return optimizer, None


def needs_quant_storage(mode: str) -> bool:
    """Whether 4-bit weights must be stored in the compute dtype (so FSDP2/ZeRO-3 can shard them)."""
    return mode in SHARDED


def deepspeed_config(mode: str) -> dict[str, Any]:
    """The DeepSpeed config for zero2/zero3. "auto" values are filled in by the Trainer from the run's
    own batch size, accumulation, clipping and precision, so the two never disagree."""
    if mode not in DEEPSPEED:
        raise ValueError(f"no DeepSpeed config for mode {mode!r}")
    zero: dict[str, Any] = {"stage": 2 if mode == "zero2" else 3, "overlap_comm": True,
                            "contiguous_gradients": True, "reduce_bucket_size": "auto"}
    if mode == "zero3":
        zero.update({"stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
                     # the adapter is written whole, from rank 0
                     "stage3_gather_16bit_weights_on_model_save": True})
    return {"zero_optimization": zero, "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
            "train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto",
            "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
            "zero_allow_untested_optimizer": True, "wall_clock_breakdown": False}


def fsdp_config(layer_classes: list[str]) -> dict[str, Any]:
    """The Trainer's fsdp_config for FSDP2: each decoder layer its own shard unit, resharded after its
    forward, full state dicts in checkpoints (so a checkpoint does not depend on the rank count)."""
    return {"version": 2, "transformer_layer_cls_to_wrap": layer_classes, "reshard_after_forward": True,
            "state_dict_type": "FULL_STATE_DICT", "cpu_ram_efficient_loading": False,
            "activation_checkpointing": False}


# ------------------------------------------------------------------ resume across modes


def checkpoint_meta(layout: Layout) -> dict[str, Any]:
    return {"mode": layout.mode, "world_size": layout.world_size, "nnodes": layout.nnodes}


def read_checkpoint_meta(checkpoint: str | Path) -> dict[str, Any]:
    """The mode a checkpoint was written with; a checkpoint without the file is a one-process one."""
    path = Path(checkpoint) / CHECKPOINT_META
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"mode": "none", "world_size": 1, "nnodes": 1}
    return data if isinstance(data, dict) else {"mode": "none", "world_size": 1, "nnodes": 1}


def _family(mode: str) -> str:
    return "replicated" if mode in ("none", "ddp") else mode


def resume_problem(meta: dict[str, Any], layout: Layout) -> str | None:
    """Why a checkpoint cannot continue under `layout` (None: it can).

    none and ddp checkpoints hold the whole optimizer state in one file: they continue on any number of
    GPUs in either mode. An FSDP2 checkpoint (full state dicts) continues under fsdp on any number of
    GPUs. DeepSpeed ZeRO checkpoints hold the optimizer state split per rank: the same mode and the
    same number of ranks only."""
    mode, world = str(meta.get("mode", "none")), int(meta.get("world_size", 1) or 1)
    target = layout.mode
    written = f"{ENGINE.get(mode, mode)} on {world} rank{'s' if world != 1 else ''}"
    if _family(mode) == _family(target) and mode not in DEEPSPEED:
        return None
    if mode in DEEPSPEED and target == mode and world == layout.world_size:
        if int(meta.get("nnodes", 1) or 1) > 1:
            return (f"the checkpoint was written by {written} across {meta.get('nnodes')} machines: DeepSpeed "
                    "left each rank's optimizer shard in its own machine's run folder, so no one folder holds "
                    "it whole. Start a new run, or keep the run folder on storage every machine shares.")
        return None
    if mode in DEEPSPEED:
        return (f"the checkpoint was written by {written}: DeepSpeed split its optimizer state into one file "
                f"per rank, which loads only into {ENGINE[mode]} on {world} ranks. Resume with "
                f"--gpus {world} --set training.distributed={mode} (and the same machines), or start a new run.")
    if mode == "fsdp":
        return (f"the checkpoint was written by {written}: its optimizer state is FSDP2's, which the "
                f"{ENGINE[target]} engine cannot load. Resume with --set training.distributed=fsdp, or start "
                "a new run.")
    return (f"the checkpoint was written by {written}: its optimizer state is one file that "
            f"{ENGINE[target]} cannot load (it shards the state its own way). Resume with "
            f"--set training.distributed={'ddp' if world > 1 else 'none'}, or start a new run.")


def check_resume(checkpoint: str | Path, config: Config) -> None:
    """TuituneError naming the checkpoint and what to do when it cannot continue under `config`."""
    problem = resume_problem(read_checkpoint_meta(checkpoint), layout_of(config))
    if problem:
        raise TuituneError(f"Cannot resume from {checkpoint}: {problem}")
