"""`tuitune train` flags for several GPUs and machines, mapped onto the training.* config fields."""

from __future__ import annotations

from typing import Any

from tuitune.distributed_fields import MODES


def add_arguments(parser) -> None:
    group = parser.add_argument_group(
        "several GPUs or machines", "torchrun starts one rank per GPU; on several machines run the same "
        "command on each, with its own --node-rank")
    group.add_argument("--gpus", metavar="N|IDS", help="GPUs on this machine: a count (2) or device ids (0,1); "
                                                      "more than one turns on --distributed ddp unless set")
    group.add_argument("--distributed", choices=MODES, help="ddp, fsdp (FSDP2), zero2 or zero3 (DeepSpeed)")
    group.add_argument("--nnodes", type=int, metavar="N", help="machines in the run")
    group.add_argument("--node-rank", type=int, metavar="K", help="this machine's place, 0 to nnodes-1")
    group.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="node 0's address, the same on every machine")


def overrides(args, current_mode: str = "none") -> dict[str, Any]:
    """The training.* overrides the flags ask for (None where a flag is absent)."""
    mode = args.distributed
    if mode is None and current_mode == "none" and _several(args):
        mode = "ddp"  # --gpus 2 alone means data parallel, the mode that changes nothing else
    return {"training.gpus": args.gpus, "training.distributed": mode, "training.nnodes": args.nnodes,
            "training.node_rank": args.node_rank, "training.rdzv_endpoint": args.rdzv_endpoint}


def _several(args) -> bool:
    from tuitune.distributed_fields import parse_gpus

    try:
        gpus = parse_gpus(args.gpus)[0] if args.gpus is not None else 1
    except ValueError:
        return False  # the config check names the bad value
    return gpus > 1 or (args.nnodes or 1) > 1
