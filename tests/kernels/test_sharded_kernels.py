"""tuitune's kernels where the weights are sharded: two gloo ranks of a tiny Llama under FSDP2
(training.distributed = fsdp; each decoder layer gathered whole before its forward) or DeepSpeed ZeRO-3
(zero3; each parameter gathered when first read in a forward, DeepSpeed's external-parameter getter)
train the same losses as one process, with every projection on the fused path on every rank. QLoRA
too: FSDP2 gathers 4-bit weights without their quantization state, which
tuitune.trainer.patching._with_quant_state gives back."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from tests.kernels import sharded_worker
from tests.kernels.tiny_models import build_base

pytestmark = pytest.mark.timeout(600)
LOSS_TOLERANCE = 1e-5  # float32 on the CPU; seen: ~5e-7


# A loop over a runtime bound, as every tuitune kernel has, under Triton's interpreter.
_INTERPRETER_PROBE = """
import os
os.environ["TRITON_INTERPRET"] = "1"
import torch, triton, triton.language as tl

@triton.jit
def fill(X, n, BLOCK: tl.constexpr):
    for i in range(0, n, BLOCK):
        tl.store(X + i + tl.arange(0, BLOCK), (i + tl.arange(0, BLOCK)).to(tl.float32))

x = torch.zeros(8)
fill[(1,)](x, 8, BLOCK=4)
assert x.tolist() == list(range(8)), x
"""


@pytest.fixture(scope="module", autouse=True)
def triton_interpreter_runs_here():
    """The ranks run on the CPU under Triton's interpreter. A CPU machine's suite runs every kernel
    there already; on a GPU machine that interpreter is otherwise unused and can be incompatible with
    the installed packages (seen: triton 3.6's interpreter fails `range(0, n, BLOCK)` with "only
    0-dimensional arrays can be converted to Python scalars"). Then these tests skip and say why."""
    if not torch.cuda.is_available():
        return
    probe = subprocess.run([sys.executable, "-c", _INTERPRETER_PROBE], capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"Triton's interpreter cannot run a kernel loop on this install ({last}); "
                    "the sharded ranks need it (CPU tensors on gloo)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(world: int, engine: str, nf4_dir: str | None, out) -> list[dict]:
    out.mkdir()
    mp.spawn(sharded_worker.train, args=(world, _free_port(), engine, nf4_dir, str(out)), nprocs=world, join=True)
    return [json.loads((out / f"rank-{r}.json").read_text()) for r in range(world)]


@pytest.fixture(scope="module", params=["lora", "qlora"])
def one_process(request, tmp_path_factory):
    """(nf4 folder or None, rank 0's result) of one process with the kernels, no sharding."""
    tmp = tmp_path_factory.mktemp(request.param)
    nf4_dir = None
    if request.param == "qlora":
        nf4_dir = str(tmp / "base")
        build_base("llama").save_pretrained(nf4_dir)
    return nf4_dir, _run(1, "none", nf4_dir, tmp / "one")[0]


@pytest.mark.parametrize("engine", ["fsdp2", "zero3"])
def test_two_sharded_ranks_with_kernels_train_as_one_process(engine, one_process, tmp_path):
    if engine == "zero3":
        pytest.importorskip("deepspeed")
    nf4_dir, one = one_process
    two = _run(2, engine, nf4_dir, tmp_path / "two")

    assert one["losses"][0] > one["losses"][-1]  # it trains
    for rank in two:
        assert rank["sharded_fraction"] == pytest.approx(0.5, abs=0.01), rank  # the base weights are split
        assert rank["fused"] == rank["projections"] == 14, rank  # 7 per layer, fused on every rank
        assert rank["losses"] == pytest.approx(one["losses"], abs=LOSS_TOLERANCE), (rank, one)
    assert one["fused"] == 14 and one["sharded_fraction"] == 1.0
