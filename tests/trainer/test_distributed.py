"""Data parallel on the CPU (torchrun, gloo): 2 ranks, and 2 "machines" on localhost, train the same
steps as one process with the same global batch; checkpoints resume across modes; controls reach every
rank; a dead rank fails the run with its number."""

from __future__ import annotations

import os
import shutil
import signal
import socket
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tuitune import distributed_plan as dp
from tuitune import events as ev
from tuitune.config import Config, apply_overrides
from tuitune.errors import TuituneError
from tuitune.runs import RunDir
from tuitune.trainer.event_sink import ControlInbox, EventSink
from tuitune.trainer.launcher import resume, start, wait_for
from tuitune.trainer.rank_main import read_statuses
from tuitune.trainer.recipes import train

pytestmark = pytest.mark.timeout(600)
GLOBAL_BATCH = 4
STEPS = 4
LOSS_TOLERANCE = 1e-4  # float32 on the CPU; seen: ~2e-6


def tiny_config(model_dir, tmp_path, ranks: int = 1, **extra) -> Config:
    overrides = {"model.name": str(model_dir), "output.dir": str(tmp_path / "runs"), "training.device": "cpu",
                 "training.batch_size": GLOBAL_BATCH // ranks, "training.gradient_accumulation_steps": 1,
                 "training.learning_rate": 5e-3, "training.optimizer": "adamw_torch", "training.seed": 11,
                 "model.max_seq_length": 96, "training.warmup_steps": 1, "training.use_kernels": False,
                 "training.max_steps": STEPS, **extra}
    if ranks > 1 and "training.nnodes" not in extra:
        overrides = {"training.distributed": "ddp", "training.gpus": str(ranks), **overrides}
    return apply_overrides(Config(), overrides)


def losses(events) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in events if e["type"] == ev.STEP}


def finish(handle, timeout: float = 400) -> dict:
    seen = wait_for(handle, lambda e: e["type"] in ev.TERMINAL, timeout=timeout)
    log = handle.run_dir.log_path.read_text()[-3000:] if handle.run_dir.log_path.exists() else ""
    assert seen and seen[-1]["type"] == ev.FINISHED, f"{seen[-1:]}\n{log}"
    assert handle.join(timeout=60) == 0
    return seen[-1]


def assert_same_losses(got: dict[int, float], want: dict[int, float], steps) -> None:
    for step in steps:
        assert got[step] == pytest.approx(want[step], abs=LOSS_TOLERANCE), (step, got, want)


def _assert_engine_logged(run: RunDir, engine: str, ranks: int = 2) -> None:
    """Rank 0 logged which distributed engine trains the run."""
    logged = [e.get("text") for e in run.events() if e["type"] == ev.LOG]
    assert f"Engine: {engine} on {ranks} ranks." in logged


def _truncated_copy(run: RunDir, dest: Path) -> RunDir:
    """A copy of a finished run that stopped after its step-2 checkpoint: no step-4 checkpoint, no adapter."""
    copy = RunDir(shutil.copytree(run.path, dest))
    shutil.rmtree(copy.checkpoints_dir / "step-4")
    shutil.rmtree(copy.adapter_dir)
    return copy


def _resumed_losses(run: RunDir, overrides: dict | None = None) -> dict[int, float]:
    """Resume the run to its end and return the losses it logged since it (re)started."""
    handle = resume(run, overrides=overrides)
    try:
        finish(handle)
    finally:
        handle.terminate()
    events = run.events()
    last_start = max(i for i, e in enumerate(events) if e["type"] == ev.STARTED)
    return losses(events[last_start:])


def one_process_then_two_ranks(model_dir, tmp_path, extra: dict):
    """The same training in one process (its per-step losses) and on two gloo ranks (its finished handle)."""
    config = tiny_config(model_dir, tmp_path / "one", **extra)
    run = RunDir.create(tmp_path / "one" / "runs", "one")
    run.write_config(config)
    train(config, run, EventSink(run), ControlInbox(run))
    handle = start(tiny_config(model_dir, tmp_path / "two", ranks=2, **extra))
    try:
        finish(handle)
    finally:
        handle.terminate()
    return losses(run.events()), handle


@pytest.fixture(scope="module")
def single(tiny_model_dir, tmp_path_factory):
    """One process, batch 4, checkpoints at steps 2 and 4."""
    tmp = tmp_path_factory.mktemp("single")
    config = tiny_config(tiny_model_dir, tmp, **{"training.save_steps": 2})
    run = RunDir.create(tmp / "runs", "single")
    run.write_config(config)
    train(config, run, EventSink(run), ControlInbox(run))
    return run, losses(run.events())


@pytest.fixture(scope="module")
def ddp_run(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    handle = start(tiny_config(tiny_model_dir, tmp, ranks=2, **{"training.save_steps": 2}))
    try:
        final = finish(handle)
    finally:
        handle.terminate()
    return handle.run_dir, final


def test_two_ranks_train_like_one_process_with_the_same_global_batch(single, ddp_run):
    run, final = ddp_run
    events = run.events()
    assert sorted(losses(events)) == list(range(1, STEPS + 1))
    assert_same_losses(losses(events), single[1], range(1, STEPS + 1))
    # rank 0 alone writes the run: one start, one end, the adapter, and checkpoints that know their mode
    assert [e["type"] for e in events].count(ev.STARTED) == 1
    assert [e["type"] for e in events].count(ev.FINISHED) == 1 and final["summary"]["steps"] == STEPS
    assert (run.adapter_dir / "adapter_model.safetensors").exists()
    meta = dp.read_checkpoint_meta(run.checkpoints_dir / "step-2")
    assert meta == {"mode": "ddp", "world_size": 2, "nnodes": 1}
    assert {r["state"] for r in read_statuses(run.path).values()} == {"finished"}
    log = next(e["text"] for e in events if e["type"] == ev.LOG)
    assert "torchrun --nproc-per-node 2" in log
    _assert_engine_logged(run, "PyTorch DDP")


def test_a_ddp_checkpoint_resumes_in_one_process(tiny_model_dir, tmp_path, single, ddp_run):
    config = tiny_config(tiny_model_dir, tmp_path)
    run = RunDir.create(tmp_path / "runs", "from-ddp")
    run.write_config(config)
    train(config, run, EventSink(run), ControlInbox(run), resume_from=str(ddp_run[0].checkpoints_dir / "step-2"))
    got = losses(run.events())
    assert sorted(got) == [3, 4]
    assert_same_losses(got, single[1], [3, 4])


def test_a_one_process_checkpoint_resumes_on_two_ranks(tmp_path, single):
    copy = _truncated_copy(single[0], tmp_path / "copy")
    got = _resumed_losses(copy, overrides={"training.distributed": "ddp", "training.gpus": "2",
                                           "training.batch_size": GLOBAL_BATCH // 2})
    assert sorted(got) == [3, 4]
    assert_same_losses(got, single[1], [3, 4])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_machines_on_localhost_train_like_one_process(tiny_model_dir, tmp_path, single):
    endpoint = f"127.0.0.1:{_free_port()}"
    handles = [start(tiny_config(tiny_model_dir, tmp_path / f"node{k}", ranks=2, **{
        "training.distributed": "ddp", "training.gpus": "1", "training.nnodes": 2, "training.node_rank": k,
        "training.rdzv_endpoint": endpoint})) for k in (0, 1)]
    try:
        finals = [finish(h) for h in handles]
    finally:
        for h in handles:
            h.terminate()
    assert_same_losses(losses(handles[0].run_dir.events()), single[1], range(1, STEPS + 1))
    assert finals[0]["summary"]["steps"] == STEPS
    assert not losses(handles[1].run_dir.events())  # node 1 trains but node 0 writes the run
    assert finals[1]["summary"]["node_rank"] == 1
    assert "--node-rank 1 --master-addr 127.0.0.1" in handles[1].run_dir.events()[0]["text"]


def test_controls_reach_every_rank(tiny_model_dir, tmp_path):
    handle = start(tiny_config(tiny_model_dir, tmp_path, ranks=2, **{"training.max_steps": 300}))
    try:
        wait_for(handle, lambda e: e["type"] == ev.STEP, timeout=300)
        handle.pause()
        seen = wait_for(handle, lambda e: e["type"] == ev.PAUSED, timeout=60)
        paused_at = [e for e in seen if e["type"] == ev.PAUSED][0]["step"]
        handle.save_now()  # every rank takes part in the checkpoint of the paused step
        seen = wait_for(handle, lambda e: e["type"] == ev.CHECKPOINT, timeout=60)
        assert [e for e in seen if e["type"] == ev.CHECKPOINT][0]["step"] == paused_at
        handle.resume()
        wait_for(handle, lambda e: e["type"] == ev.STEP and e["step"] > paused_at, timeout=60)
        handle.stop()
        final = finish(handle, timeout=120)
        assert final["summary"]["stopped"] is True and final["summary"]["steps"] < 300
        assert (handle.run_dir.adapter_dir / "adapter_config.json").exists()
    finally:
        handle.terminate()


def test_a_dead_rank_fails_the_run_with_its_number(tiny_model_dir, tmp_path):
    handle = start(tiny_config(tiny_model_dir, tmp_path, ranks=2, **{"training.max_steps": 1000}))
    try:
        wait_for(handle, lambda e: e["type"] == ev.STEP, timeout=300)
        pid = wait_until(lambda: read_statuses(handle.run_dir.path).get(1, {}).get("pid"), timeout=10)
        os.kill(pid, signal.SIGKILL)
        seen = wait_for(handle, lambda e: e["type"] in ev.TERMINAL, timeout=120)
        final = seen[-1]
        assert final["type"] == ev.FAILED, final
        assert final["rank"] == 1 and final["message"].startswith("Rank 1 of 2"), final
        assert "SIGKILL" in final["message"] and "--resume" in final["advice"]
        assert handle.join(timeout=60) == 1
    finally:
        handle.terminate()


@pytest.mark.parametrize("objective", ["dpo", "cpt"])
def test_preference_and_pretraining_train_on_two_ranks_like_one_process(tiny_model_dir, tmp_path, objective):
    from tests.trainer.method_data import write_pairs, write_text

    data = write_pairs(tmp_path / "pairs.jsonl") if objective == "dpo" else write_text(tmp_path / "text.jsonl")
    extra = {"data.path": str(data), "training.objective": objective, "training.max_steps": 2}
    want, handle = one_process_then_two_ranks(tiny_model_dir, tmp_path, extra)
    events = handle.run_dir.events()
    steps = [e["step"] for e in events if e["type"] == ev.STEP]
    assert steps == [1, 2]  # rank 0 alone reports
    assert_same_losses(losses(events), want, steps)
    assert (handle.run_dir.adapter_dir / "adapter_config.json").exists()


def test_qlora_on_two_ranks_trains_like_one_process(tiny_model_dir, tmp_path):
    """Each rank holds the 4-bit model (bitsandbytes' CPU backend here, as each GPU would under DDP)."""
    want, handle = one_process_then_two_ranks(tiny_model_dir, tmp_path, {"model.method": "qlora",
                                                                          "training.max_steps": 3})
    events = handle.run_dir.events()
    assert next(e for e in events if e["type"] == ev.STARTED)["method"] == "qlora"
    assert_same_losses(losses(events), want, [1, 2, 3])
    assert (handle.run_dir.adapter_dir / "adapter_config.json").exists()


# ------------------------------------------------------------------ DeepSpeed ZeRO on the CPU (gloo)


@pytest.fixture(scope="module", params=["zero2", "zero3"])
def zero_run(request, tiny_model_dir, tmp_path_factory):
    """Two ranks under DeepSpeed's CPU accelerator, checkpoints at steps 2 and 4."""
    pytest.importorskip("deepspeed")
    mode = request.param
    tmp = tmp_path_factory.mktemp(mode)
    handle = start(tiny_config(tiny_model_dir, tmp, ranks=2, **{"training.distributed": mode,
                                                                "training.save_steps": 2}))
    try:
        finish(handle)
    finally:
        handle.terminate()
    return mode, handle.run_dir


def _adapter(run: RunDir) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run.adapter_dir / "adapter_model.safetensors"))


def _assert_same_adapter(got_run: RunDir, want_run: RunDir, atol: float = LOSS_TOLERANCE) -> None:
    """The two runs saved adapters with the same tensors (names, shapes, values within atol)."""
    got, want = _adapter(got_run), _adapter(want_run)
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        assert got[name].shape == tensor.shape, name
        assert (got[name] - tensor).abs().max().item() < atol, name


def test_deepspeed_ranks_train_like_one_process(single, zero_run):
    mode, run = zero_run
    _assert_engine_logged(run, dp.ENGINE[mode])
    assert_same_losses(losses(run.events()), single[1], range(1, STEPS + 1))
    assert dp.read_checkpoint_meta(run.checkpoints_dir / "step-2") == {"mode": mode, "world_size": 2, "nnodes": 1}
    # ZeRO-3 holds half of every adapter matrix per rank: the saved adapter is gathered whole
    _assert_same_adapter(run, single[0], atol=LOSS_TOLERANCE)


def test_a_deepspeed_checkpoint_resumes_only_under_its_mode_and_rank_count(tmp_path, single, zero_run):
    mode, run = zero_run
    copy = _truncated_copy(run, tmp_path / "copy")
    one_process = {"training.distributed": "none", "training.gpus": "1", "training.batch_size": GLOBAL_BATCH}
    with pytest.raises(TuituneError, match=f"--gpus 2 --set training.distributed={mode}"):
        resume(copy, overrides=one_process)
    got = _resumed_losses(copy)
    assert sorted(got) == [3, 4]
    assert_same_losses(got, single[1], [3, 4])


def test_qlora_under_zero3_trains_like_one_process(tiny_model_dir, tmp_path):
    """4-bit weights stored in the compute dtype (bnb_4bit_quant_storage), so ZeRO-3 partitions them."""
    pytest.importorskip("deepspeed")
    want, handle = one_process_then_two_ranks(tiny_model_dir, tmp_path, {
        "model.method": "qlora", "training.max_steps": 3, "training.distributed": "zero3"})
    _assert_engine_logged(handle.run_dir, "DeepSpeed ZeRO-3")
    assert_same_losses(losses(handle.run_dir.events()), want, [1, 2, 3])
    assert (handle.run_dir.adapter_dir / "adapter_config.json").exists()


# ------------------------------------------------------------------ FSDP2 on the CPU (gloo)

FSDP_ON_CPU = Path(__file__).parent / "fsdp_on_cpu"  # lifts Accelerate's GPU-only gate in the ranks


@pytest.fixture(scope="module")
def fsdp_run(tiny_model_dir, tmp_path_factory):
    """Two FSDP2 ranks through tuitune's fsdp wiring, checkpoints at steps 2 and 4 (see fsdp_on_cpu)."""
    if torch_cuda_available():
        pytest.skip("two ranks on one GPU: the GPU machine runs fsdp through bench.distributed_compare")
    tmp = tmp_path_factory.mktemp("fsdp")
    patch = pytest.MonkeyPatch()
    patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FSDP_ON_CPU), os.environ.get("PYTHONPATH")])))
    fsdp = {"training.distributed": "fsdp", "training.device": "auto", "training.save_steps": 2}
    handle = start(tiny_config(tiny_model_dir, tmp, ranks=2, **fsdp))
    try:
        finish(handle)
        yield handle.run_dir  # the patched PYTHONPATH stays set while the module's tests run
    finally:
        handle.terminate()
        patch.undo()


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def test_fsdp2_ranks_train_like_one_process(single, fsdp_run):
    run = fsdp_run
    _assert_engine_logged(run, "PyTorch FSDP2 (Accelerate)")
    assert_same_losses(losses(run.events()), single[1], range(1, STEPS + 1))
    assert dp.read_checkpoint_meta(run.checkpoints_dir / "step-2") == {"mode": "fsdp", "world_size": 2, "nnodes": 1}
    _assert_same_adapter(run, single[0], atol=LOSS_TOLERANCE)  # gathered from both ranks' shards


def test_an_fsdp2_checkpoint_resumes_under_fsdp(tmp_path, single, fsdp_run):
    copy = _truncated_copy(fsdp_run, tmp_path / "copy")  # fsdp_run's PYTHONPATH stays set for the resumed ranks
    with pytest.raises(TuituneError, match="optimizer state is FSDP2's"):
        resume(copy, overrides={"training.distributed": "ddp"})
    got = _resumed_losses(copy)
    assert sorted(got) == [3, 4]
    assert_same_losses(got, single[1], [3, 4])
