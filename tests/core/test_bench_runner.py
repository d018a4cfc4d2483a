"""The bench's measuring processes run the tuitune the parent runs, whatever folder it is started from."""

import math

import pytest

from tuitune.bench.runner import run_child
from tuitune.errors import TuituneError


def test_a_child_imports_the_parents_tuitune_not_the_working_folders(tmp_path, monkeypatch):
    decoy = tmp_path / "tuitune"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("")
    (decoy / "__main__.py").write_text("print('decoy checkout')\n")
    monkeypatch.chdir(tmp_path)
    done = run_child("tuitune", "--help", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "decoy" not in done.stdout and "bench" in done.stdout, done.stdout


def _fake_result(job) -> dict:
    speeds = {("hf", "standard"): 5000.0, ("tuitune", "none"): 15000.0, ("tuitune", "standard"): 10000.0,
              ("tuitune", "offloaded"): 11000.0}
    peaks = {"none": 20.0, "standard": 6.0, "offloaded": 5.5}
    speed = 16000.0 if job.dequantized else speeds[(job.path, job.checkpointing)]
    peak = 12.0 if job.path == "hf" else 34.0 if job.dequantized else peaks[job.checkpointing]
    return {"path": job.path, "kernels": "applied", "checkpointing": job.checkpointing, "trainable_params": 1,
            "points": [{"tokens_per_s": speed, "losses": [1.0], "peak_allocated_gb": peak,
                        "peak_reserved_gb": 13.0}]}


def test_bench_auto_runs_stock_as_users_do_and_tuitune_under_every_mode(monkeypatch):
    from tuitune.bench import runner

    jobs = []
    monkeypatch.setattr(runner, "run_path", lambda job: jobs.append(job) or _fake_result(job))
    result = runner.run_bench("llama-8b", batch=2, seq=2048, rank=16, steps=3, checkpointing="auto",
                              free_gb=139.0)
    assert [(j.path, j.checkpointing, j.dequantized) for j in jobs] == [
        ("hf", "standard", False), ("tuitune", "none", True), ("tuitune", "none", False),
        ("tuitune", "standard", False), ("tuitune", "offloaded", False)]
    assert result["auto"]["mode"] == "none" and result["auto"]["policy"] == "dequantized"
    assert list(result["policies"]) == ["dequantized", "none", "standard", "offloaded"]
    assert result["runs"]["tuitune"] is result["policies"]["dequantized"]
    assert result["ratios"]["tokens_per_s"] == 3.2
    report = runner.format_report(result)
    assert "  dequantized (auto)" in report and "3.20x stock speed, 2.83x stock peak" in report
    assert "  none " in report and "3.00x stock speed, 1.67x stock peak" in report
    assert "  offloaded " in report and "2.20x stock speed, 0.46x stock peak" in report
    assert "auto picks none, base weights dequantized once, the fastest mode; about " in report


def test_bench_auto_without_room_for_dequantized_weights_picks_plain_none(monkeypatch):
    from tuitune.bench import runner
    from tuitune.bench.shapes import get_shape

    spec = get_shape("llama-8b").model_spec()
    from tuitune import fit

    free = fit.estimate(spec, "qlora", checkpointing="none").total_gb / 0.85  # none fits, +15 GB does not
    monkeypatch.setattr(runner, "run_path", _fake_result)
    result = runner.run_bench("llama-8b", batch=2, seq=2048, rank=16, steps=3, checkpointing="auto", free_gb=free)
    assert result["auto"]["policy"] == "none" and result["runs"]["tuitune"] is result["policies"]["none"]
    assert "the fastest mode that fits (none, base weights dequantized once needs " in result["auto"]["reason"]


def test_bench_auto_takes_a_lighter_mode_when_the_fastest_does_not_fit():
    from tuitune.bench.runner import auto_choice
    from tuitune.bench.shapes import get_shape

    shape = get_shape("llama-8b")
    roomy = auto_choice(shape, method="qlora", batch=2, seq=2048, rank=16, device="cuda", free_gb=139.0)
    tight = auto_choice(shape, method="qlora", batch=2, seq=2048, rank=16, device="cuda", free_gb=12.0)
    assert roomy["mode"] == "none" and tight["mode"] in ("standard", "offloaded")
    assert tight["needs_gb"]["none"] > 12.0 >= tight["needs_gb"][tight["mode"]]
    unknown = auto_choice(shape, method="qlora", batch=2, seq=2048, rank=16, device="cpu")
    assert unknown["mode"] == "standard" and "does not report its free memory" in unknown["reason"]


def test_graphed_runs_count_their_pool_in_the_peak(monkeypatch):
    """The allocator does not count a CUDA graph's pool as allocated between replays; the bench does."""
    from tuitune.bench import runner

    def fake(job):
        if job.path == "hf":
            return {"path": "hf", "points": [{"tokens_per_s": 5000.0, "losses": [1.0], "peak_allocated_gb": 10.0,
                                              "peak_reserved_gb": 11.0}]}
        point = {"tokens_per_s": 12000.0 if job.cuda_graphs else 10000.0, "losses": [1.0],
                 "peak_allocated_gb": 4.5, "timed_peak_allocated_gb": 4.0, "peak_reserved_gb": 5.0}
        run = {"path": "tuitune", "points": [point]}
        if job.cuda_graphs:
            run.update(cuda_graphs="64 captured", graph_pool_gb=1.0)
        return run

    jobs = []
    monkeypatch.setattr(runner, "run_path", lambda job: jobs.append(job) or fake(job))
    result = runner.run_bench("llama-8b", batch=2, seq=2048, rank=16, steps=3, checkpointing="offloaded",
                              cuda_graphs="both")
    assert [(j.path, j.cuda_graphs) for j in jobs] == [("hf", False), ("tuitune", False), ("tuitune", True)]
    assert runner.peak_gb(result["runs"]["tuitune graphs"]) == 5.0  # timed peak 4.0 + pool 1.0
    lent = {**result["runs"]["tuitune graphs"], "graph_outside_pool_peak_gb": 3.25}
    assert runner.peak_gb(lent) == 4.25  # the loss borrowed the pool: the peak outside it + the pool
    assert runner.peak_gb(result["runs"]["tuitune"]) == 4.5
    report = runner.format_report(result)
    assert "ratio (graphs)" in report and "2.40x" in report and "0.50x" in report, report


def test_graphs_are_also_measured_without_recomputation(monkeypatch):
    """Layers that keep their activations have graphs too (tuitune.trainer.kept_layer_graphs)."""
    from tuitune.bench import runner

    jobs = []
    monkeypatch.setattr(runner, "run_path", lambda job: jobs.append(job) or {
        "path": job.path, "points": [{"tokens_per_s": 1000.0, "losses": [1.0], "peak_allocated_gb": 1.0}]})
    runner.run_bench("llama-1b", batch=2, seq=2048, rank=16, steps=3, checkpointing="none", cuda_graphs="both",
                     baseline="none")
    assert [(j.checkpointing, j.cuda_graphs) for j in jobs] == [("none", False), ("none", True)]


def test_packing_path_reports_packed_against_unpacked(tmp_path, monkeypatch):
    from tuitune.bench import trainer_compare

    class Words:
        def __call__(self, text):
            return {"input_ids": text.split()}

    monkeypatch.setattr(trainer_compare, "checkpoint_with_tokenizer", lambda shape, corpus: tmp_path)
    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", lambda *args, **kwargs: Words())
    monkeypatch.setattr(trainer_compare, "train_once",
                        lambda *args, packing, **kwargs: {"tokens_per_s": 3000.0 if packing else 1000.0})
    report = trainer_compare.packing_path("tiny", batch=2, seq=256, steps=3, method="qlora",
                                          checkpointing="standard", out=tmp_path)
    assert report["packed_vs_unpacked"] == 3.0 and set(report["runs"]) == {"packed", "unpacked"}
    assert 50 <= report["row_tokens"]["min"] <= report["row_tokens"]["max"] <= 256


def test_the_product_path_shows_what_a_lent_pools_peak_was_made_of():
    from tuitune.bench.trainer_compare import format_product_path

    run = {"tokens_per_s": 48000.0, "peak_gpu_memory_gb": 1.81, "kernels": "on",
           "peak_gpu_memory_parts": {"before_training_gb": 1.81, "outside_pool_gb": 0.83, "pool_gb": 0.62}}
    runs = {"kernels": run, "no-kernels": dict(run, peak_gpu_memory_parts=None)}
    report = {"checkpointing": "offloaded", "runs": runs}
    lines = format_product_path(report).splitlines()
    parts = [line.strip() for line in lines if "peak = max" in line]
    assert parts == ["peak = max(before training 1.81, outside the pool 0.83 + pool 0.62) GiB"]
    assert lines.index(next(line for line in lines if "peak = max" in line)) == 2  # under the kernels run


def test_the_product_path_says_which_run_had_its_batch_facts():
    from tuitune import events as ev
    from tuitune.bench.trainer_compare import format_product_path, said_batch_facts

    assert said_batch_facts([{"type": ev.LOG, "text": "Batch facts: each batch's label rows ..."}])
    assert not said_batch_facts([{"type": ev.WARNING, "text": "Batch facts: ..."}, {"type": ev.LOG, "text": "x"}])
    run = {"tokens_per_s": 48000.0, "peak_gpu_memory_gb": 1.81, "kernels": "on", "batch_facts": True}
    lines = format_product_path({"checkpointing": "offloaded",
                                 "runs": {"kernels": run, "stock": dict(run, batch_facts=False)}}).splitlines()
    said = [i for i, line in enumerate(lines) if "Batch facts on" in line]
    assert said == [2]  # once, under the kernels run


def test_bench_both_baselines_runs_stock_plain_and_under_autocast(monkeypatch):
    from tuitune.bench import runner

    jobs = []
    speeds = {(False, "hf"): 5000.0, (True, "hf"): 6500.0, (False, "tuitune"): 10000.0}
    peaks = {(False, "hf"): 12.0, (True, "hf"): 8.0, (False, "tuitune"): 5.0}

    def fake(job):
        jobs.append(job)
        key = (job.autocast, job.path)
        return {"path": job.path, "kernels": "not used", "checkpointing": job.checkpointing, "trainable_params": 1,
                "autocast": "bf16 forward" if job.autocast else "off",
                "points": [{"tokens_per_s": speeds[key], "losses": [1.0], "peak_allocated_gb": peaks[key],
                            "peak_reserved_gb": peaks[key] + 1}]}

    monkeypatch.setattr(runner, "run_path", fake)
    result = runner.run_bench("llama-8b", batch=2, seq=2048, rank=16, steps=3, baseline="both")
    assert [(j.path, j.autocast) for j in jobs] == [("hf", False), ("hf", True), ("tuitune", False)]
    assert list(result["runs"]) == ["hf", "hf autocast", "tuitune"]
    # the baseline stays the plain loop; autocast is a second reference
    assert result["ratios"]["tokens_per_s"] == 2.0 and result["ratios"]["peak_allocated"] == 5.0 / 12.0
    assert result["ratios_autocast"]["tokens_per_s"] == 10000.0 / 6500.0
    report = runner.format_report(result)
    assert "baseline (hf autocast)" in report and "ratio (autocast)" in report and "1.54x" in report
    assert "; autocast bf16 forward" in report

    jobs.clear()
    alone = runner.run_bench("llama-8b", batch=2, seq=2048, rank=16, steps=3, baseline="hf-autocast")
    assert [(j.path, j.autocast) for j in jobs] == [("hf", True), ("tuitune", False)]
    assert alone["ratios"]["tokens_per_s"] == 10000.0 / 6500.0 and "ratios_autocast" not in alone
    with pytest.raises(TuituneError, match="--baseline must be one of"):
        runner.run_bench("llama-8b", batch=2, seq=2048, rank=16, steps=3, baseline="trainer")


def test_autocast_runs_the_stock_forward_in_bf16(tmp_path, monkeypatch):
    """A real stock step under autocast: same data and weights, bf16 rounding in the forward only."""
    from tuitune.bench import measure
    from tuitune.bench.shapes import get_shape

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    losses = {}
    for autocast in (False, True):
        job = measure.Job(checkpoint="", vocab=get_shape("tiny").vocab, path="hf", method="lora", rank=4,
                          points=[[2, 16, 2, 1]], checkpointing="none", device="cpu", shape="tiny", autocast=autocast)
        result = measure.run(job)
        assert result["autocast"] == ("bf16 forward" if autocast else "off")
        losses[autocast] = result["points"][0]["losses"]
    assert all(math.isfinite(x) for x in losses[True])
    assert losses[True][0] == pytest.approx(losses[False][0], rel=2e-2)
    assert losses[True][0] != losses[False][0]  # the forward really ran in bf16


def test_a_memory_cap_reaches_every_measuring_process_and_bounds_auto(monkeypatch):
    """`tuitune bench --memory-cap 24` measures as a 24 GiB card would: each process is capped, and
    `auto` picks from what fits in 24 GiB, not in the GPU's free memory."""
    from tuitune.bench import runner
    from tuitune.cli.main import main

    jobs = []
    monkeypatch.setattr(runner, "run_path", lambda job: jobs.append(job) or _fake_result(job))
    assert main(["bench", "--shape", "llama-8b", "--checkpointing", "auto", "--steps", "3",
                 "--memory-cap", "24", "--device", "cuda"]) == 0
    assert jobs and all(job.memory_cap_gb == 24.0 for job in jobs)
    result = runner.run_bench("llama-8b", batch=2, seq=2048, rank=16, steps=3, checkpointing="auto",
                              device="cuda", memory_cap_gb=24.0)
    assert result["auto"]["policy"] == "none"  # dequantized weights (34 GB here) would not fit 24 GiB
    uncapped = runner.run_bench("llama-8b", batch=2, seq=2048, rank=16, steps=3, checkpointing="auto",
                                device="cuda", free_gb=139.0)
    assert uncapped["auto"]["policy"] == "dequantized"
    capped = runner.run_bench("llama-8b", batch=2, seq=2048, rank=16, steps=3, checkpointing="auto",
                              device="cuda", free_gb=139.0, memory_cap_gb=24.0)
    assert capped["auto"]["policy"] == "none" and capped["auto"]["free_gb"] == 24.0  # the cap bounds what is free
    small = runner.run_bench("llama-8b", batch=2, seq=2048, rank=16, steps=3, checkpointing="auto",
                             device="cuda", free_gb=10.0, memory_cap_gb=24.0)
    assert small["auto"]["free_gb"] == 10.0  # a cap above what is free adds nothing


def test_a_negative_memory_cap_is_refused_in_one_sentence(capsys):
    from tuitune.cli.main import main

    assert main(["bench", "--shape", "llama-1b", "--memory-cap", "-1"]) != 0
    err = capsys.readouterr().err
    assert "--memory-cap -1: give the cap in GiB, above 0" in err and "Traceback" not in err


def test_the_trainers_tokens_per_s_leave_out_warm_up_profiled_steps_and_the_step_before_them():
    from tuitune.bench.trainer_compare import timed_rates

    steps = [{"step": n, "tokens_per_s": 100.0 * n} for n in range(1, 11)]
    assert timed_rates(steps, None) == [100.0 * n for n in range(3, 11)]
    assert timed_rates(steps, {"first_step": 5, "last_step": 7}) == [300.0, 800.0, 900.0, 1000.0]
    assert timed_rates([*steps[:2], {"step": 3, "tokens_per_s": None}, *steps[3:4]], None) == [400.0]
