"""tuitune's kernels under FSDP2 (training.distributed = fsdp): two gloo ranks of a tiny Llama, each
decoder layer sharded, train the same losses as one process, with every projection on the fused path
on every rank; for QLoRA too, whose 4-bit weights FSDP2 gathers without their quantization state
(tuitune.trainer.patching._with_quant_state gives it back)."""

from __future__ import annotations

import json
import socket

import pytest
import torch.multiprocessing as mp

from tests.kernels import fsdp2_worker
from tests.kernels.tiny_models import build_base

pytestmark = pytest.mark.timeout(600)
LOSS_TOLERANCE = 1e-5  # float32 on the CPU; seen: ~5e-7


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(world: int, nf4_dir: str | None, out) -> list[dict]:
    out.mkdir()
    mp.spawn(fsdp2_worker.train, args=(world, _free_port(), nf4_dir, str(out)), nprocs=world, join=True)
    return [json.loads((out / f"rank-{r}.json").read_text()) for r in range(world)]


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_two_fsdp2_ranks_with_kernels_train_as_one_process(method, tmp_path):
    nf4_dir = None
    if method == "qlora":
        nf4_dir = str(tmp_path / "base")
        build_base("llama").save_pretrained(nf4_dir)
    one = _run(1, nf4_dir, tmp_path / "one")[0]
    two = _run(2, nf4_dir, tmp_path / "two")

    assert one["losses"][0] > one["losses"][-1]  # it trains
    for rank in two:
        assert rank["sharded_fraction"] == pytest.approx(0.5, abs=0.01), rank  # the base weights are split
        assert rank["fused"] == rank["projections"] == 14, rank  # 7 per layer, fused on every rank
        assert rank["losses"] == pytest.approx(one["losses"], abs=LOSS_TOLERANCE), (rank, one)
    assert one["fused"] == 14 and one["sharded_fraction"] == 1.0
