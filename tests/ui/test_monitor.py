"""Monitor screen: live runs through a fake trainer handle, past runs and background runs from disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.ui.fakes import FakeHandle
from tests.ui.pilot import SIZE, make_app, text_of, wait_until
from tuitune.config import Config
from tuitune.runs import CONTROL_FILE, RunDir
from tuitune.ui.app import TuituneApp
from tuitune.ui.screens.monitor import MonitorScreen

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600.0  # fixed timestamps: snapshots and log stamps never depend on the clock


def started(max_steps: int = 50) -> dict:
    return {"type": "started", "ts": T0, "model": "smollm2-135m-instruct", "device": "cpu",
            "max_steps": max_steps, "trainable_params": 4_884_480}


def step(n: int, max_steps: int = 50) -> dict:
    loss = 3.2 - 0.035 * n + (0.08 if n % 4 == 0 else 0.0)
    return {"type": "step", "ts": T0 + 2.0 * n, "step": n, "max_steps": max_steps, "epoch": n / max_steps,
            "loss": round(loss, 4), "lr": 2e-4 * (1 - n / max_steps), "grad_norm": 0.42, "tokens_per_s": 1234.0,
            "samples_per_s": 3.5, "mem_allocated_gb": 1.25, "mem_reserved_gb": 2.5,
            "eta_s": 2.0 * (max_steps - n), "elapsed_s": 2.0 * n}


def evaluation(n: int) -> dict:
    return {"type": "eval", "ts": T0 + 2.0 * n + 0.5, "step": n, "eval_loss": round(3.1 - 0.03 * n, 4)}


def make_run(root: Path, name: str = "20260101-000000-demo") -> RunDir:
    run = RunDir(root / name)
    (run.path / "checkpoints").mkdir(parents=True)
    run.write_config(Config())
    return run


def opened(app: TuituneApp) -> bool:
    return isinstance(app.screen, MonitorScreen) and app.screen.run is not None


def stats_text(screen: MonitorScreen) -> str:
    return text_of(screen.stats)


async def open_live(pilot, app: TuituneApp, handle: FakeHandle) -> MonitorScreen:
    """Open the run of `handle` as one started from this UI; the Monitor showing it."""
    app.live_handle = handle
    app.open_run(handle.run_dir.path)
    await wait_until(pilot, lambda: opened(app))
    return app.screen


def status_text(screen: MonitorScreen) -> str:
    return text_of(screen.status_bar)


def log_lines(screen: MonitorScreen) -> list[str]:
    return list(screen.run_log.lines)


async def test_live_handle_events_fill_the_monitor_and_controls_reach_the_handle(tmp_path):
    run = make_run(tmp_path / "runs")
    handle = FakeHandle(run)
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_live(pilot, app, handle)
        handle.feed(started(), *[step(n) for n in range(1, 21)], evaluation(20))
        await wait_until(pilot, lambda: "step       20 / 50" in stats_text(screen))
        chart = screen.chart
        assert [x for x, _ in chart.train.points] == [float(n) for n in range(1, 21)]
        assert chart.eval.points == [(20.0, 2.5)]
        assert "lr         1.200e-04" in stats_text(screen)
        assert "tokens/s   1,234" in stats_text(screen)
        assert "GPU alloc  1.25 GB\nGPU resv   2.50 GB" in stats_text(screen)
        assert (screen.progress.progress, screen.progress.total) == (20, 50)
        assert text_of(screen.eta) == "ETA 00:01:00"
        assert any("eval at step 20: loss 2.5" in line for line in log_lines(screen))
        assert "running" in status_text(screen) and "live, started here" in status_text(screen)

        await pilot.press("p")
        handle.feed({"type": "paused", "ts": T0 + 41, "step": 20})
        await wait_until(pilot, lambda: "paused" in status_text(screen))
        await pilot.press("r")
        handle.feed({"type": "resumed", "ts": T0 + 42, "step": 20})
        await wait_until(pilot, lambda: "running" in status_text(screen))
        await pilot.press("c")
        handle.feed({"type": "checkpoint", "ts": T0 + 43, "step": 20, "path": "checkpoints/step-20"})
        await wait_until(pilot, lambda: any("checkpoint at step 20" in line for line in log_lines(screen)))
        await pilot.press("x")
        await pilot.pause(0.1)
        assert handle.controls == ["pause", "resume", "save_now"], "stop must wait for the confirmation"
        await pilot.press("y")  # the fake handle then ends the run with a stopped `finished` event
        await wait_until(pilot, lambda: "stopped" in status_text(screen))
        assert text_of(screen.eta) == "ETA done"
        assert handle.controls == ["pause", "resume", "save_now", "stop"]


async def test_step_events_are_batched_into_few_redraws(tmp_path):
    run = make_run(tmp_path / "runs")
    handle = FakeHandle(run)
    app = make_app(tmp_path)
    batches: list[MonitorScreen.Batch] = []

    def record(message) -> None:
        if isinstance(message, MonitorScreen.Batch):
            batches.append(message)

    async with app.run_test(size=SIZE, message_hook=record) as pilot:
        screen = await open_live(pilot, app, handle)
        handle.feed(started(500), *[step(n, 500) for n in range(1, 501)])
        await wait_until(pilot, lambda: "step       500 / 500" in stats_text(screen))
        # The hook sees a Batch when it bubbles up to the app (the screen's own message task was started
        # from the test's context, which has no hook), which can be after the screen has drawn it.
        await wait_until(pilot, lambda: sum(len(batch.events) for batch in batches) >= 501,
                         what="the batches bubbling up to the app")
        assert sum(len(batch.events) for batch in batches) == 501
        assert len(batches) <= 3, f"{len(batches)} redraws for one burst of events"
        assert len(screen.chart.train.points) == 500


async def test_opening_the_live_run_again_keeps_its_reader(tmp_path):
    """The Monitor's resume and open_run both open a run started here; the second open keeps the reader
    instead of replaying the history from disk (which raced the events arriving meanwhile)."""
    run = make_run(tmp_path / "runs")
    handle = FakeHandle(run)
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_live(pilot, app, handle)

        def readers():
            return [w for w in screen.workers if w.group == "monitor-reader" and not w.is_finished]

        await wait_until(pilot, lambda: len(readers()) == 1 and not any(
            w.group == "open-monitor" and not w.is_finished for w in app.workers))
        reader = readers()[0]
        handle.feed(started(5), *[step(n, 5) for n in range(1, 4)])
        app.open_run(run.path)
        handle.feed(*[step(n, 5) for n in range(4, 6)])
        await wait_until(pilot, lambda: "step       5 / 5" in stats_text(screen))
        assert readers() == [reader]
        assert [x for x, _ in screen.chart.train.points] == [1, 2, 3, 4, 5]


async def test_past_run_opens_from_disk_and_refuses_controls(tmp_path):
    run = make_run(tmp_path / "runs")
    for event in [started(10), *[step(n, 10) for n in range(1, 11)], evaluation(10),
                  {"type": "finished", "ts": T0 + 30, "summary": {"final_loss": 2.9, "steps": 10, "stopped": False}}]:
        run.append_event(event)
    run.log_path.write_text("loading model\rloading model: done\nstep 10 done\n")
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        app.open_run(run.path)
        await wait_until(pilot, lambda: opened(app)
                       and "finished" in status_text(app.screen) and log_lines(app.screen))
        screen = app.screen
        assert "recorded" in status_text(screen)
        assert "step       10 / 10" in stats_text(screen)
        lines = log_lines(screen)
        assert "train.log │ loading model: done" in lines and "train.log │ step 10 done" in lines
        assert any("finished after 10 steps, final loss 2.9" in line for line in lines)
        shown: list[str] = []
        app.notify = lambda message, **kwargs: shown.append(message)
        await pilot.press("p")
        await pilot.pause(0.1)
        assert not (run.path / CONTROL_FILE).exists()
        assert any("is not running" in message for message in shown)


async def test_reattaches_to_a_background_run_and_controls_it_through_its_files(tmp_path):
    run = make_run(tmp_path / "runs")
    run.pid_path.write_text(str(os.getpid()))  # a live trainer process, as the run dir sees it
    run.append_event(started(30))
    run.append_event(step(1, 30))
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        app.open_run(run.path)
        await wait_until(pilot, lambda: opened(app)
                       and "step       1 / 30" in stats_text(app.screen))
        screen = app.screen
        assert "following events.jsonl" in status_text(screen)
        for n in range(2, 6):
            run.append_event(step(n, 30))
        await wait_until(pilot, lambda: "step       5 / 30" in stats_text(screen))
        await pilot.press("p")
        await pilot.press("c")
        await pilot.press("x", "y")
        await wait_until(pilot, lambda: (run.path / CONTROL_FILE).exists()
                       and len((run.path / CONTROL_FILE).read_text().splitlines()) == 3)
        sent = [json.loads(line)["control"] for line in (run.path / CONTROL_FILE).read_text().splitlines()]
        assert sent == ["pause", "save_now", "stop"]


def _snapshot_run(tmp_path: Path) -> RunDir:
    run = make_run(tmp_path / "runs", "20260101-000000-snapshot")
    events = [started(60)]
    for n in range(1, 46):
        events.append(step(n, 60))
        if n % 15 == 0:
            events.append(evaluation(n))
    events.append({"type": "checkpoint", "ts": T0 + 60.0, "step": 30, "path": "checkpoints/step-30"})
    events.append({"type": "warning", "ts": T0 + 61.0, "text": "dropout > 0: the fused LoRA kernels are off"})
    for event in events:
        run.append_event(event)
    run.log_path.write_text("tokenizing 285 rows\n")
    return run


@pytest.mark.timeout(60)
def test_monitor_snapshot(tmp_path, snap_compare):
    run = _snapshot_run(tmp_path)
    app = make_app(tmp_path)

    async def open_it(pilot):
        app.open_run(run.path)
        await wait_until(pilot, lambda: opened(app)
                       and "step       45 / 60" in stats_text(app.screen)
                       and "failed" in status_text(app.screen))
        app.screen.set_focus(None)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=open_it)


async def test_preference_runs_show_rewards_and_the_best_checkpoint_beside_the_loss(tmp_path):
    run = make_run(tmp_path / "runs")
    dpo_step = {**step(6), "reward_margin": 0.7003, "reward_accuracy": 0.75, "reward_chosen": 0.41,
                "reward_rejected": -0.29}
    best = {"type": "checkpoint", "ts": T0 + 13, "step": 6, "path": str(run.checkpoints_dir / "step-6"),
            "best": True, "eval_loss": 0.4195}
    for event in ({**started(), "objective": "dpo"}, step(5), dpo_step, evaluation(6), best):
        run.append_event(event)
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        app.open_run(run.path)
        await wait_until(pilot, lambda: opened(app) and "margin" in stats_text(app.screen))
        text = stats_text(app.screen)
        assert "objective  dpo" in text
        assert "margin     0.7003\nreward acc 75%\nchosen/rej 0.41 / -0.29" in text
        assert "best       step 6 (0.4195)" in text
