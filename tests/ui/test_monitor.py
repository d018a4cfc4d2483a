"""Monitor screen: live runs through a fake trainer handle, past runs and background runs from disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tuitune.config import Config
from tuitune.hardware import FakeGpuSource
from tuitune.runs import CONTROL_FILE, RunDir
from tuitune.ui.app import TuituneApp
from tuitune.ui.screens.monitor import MonitorScreen
from tuitune.ui.widgets.loss_chart import LossChart
from uifakes import QueueHandle, wait_for

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


def make_app(tmp_path: Path, **kwargs) -> TuituneApp:
    return TuituneApp(gpu_source=FakeGpuSource.none(), runs_root=tmp_path / "runs", remember_theme=False,
                      settings_path=tmp_path / "settings.toml", **kwargs)


def opened(app: TuituneApp) -> bool:
    return isinstance(app.screen, MonitorScreen) and app.screen.run is not None


def stats_text(screen: MonitorScreen) -> str:
    return str(screen.query_one("#monitor-stats").render())


def status_text(screen: MonitorScreen) -> str:
    return str(screen.query_one("#monitor-status").render())


def log_lines(screen: MonitorScreen) -> list[str]:
    from textual.widgets import Log

    return list(screen.query_one(Log).lines)


async def test_live_handle_events_fill_the_monitor_and_controls_reach_the_handle(tmp_path):
    run = make_run(tmp_path / "runs")
    handle = QueueHandle(run)
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        app.live_handle = handle
        app.open_run(run.path)
        await wait_for(pilot, lambda: opened(app))
        screen = app.screen
        handle.feed(started(), *[step(n) for n in range(1, 21)], evaluation(20))
        await wait_for(pilot, lambda: "step       20 / 50" in stats_text(screen))
        chart = screen.query_one(LossChart)
        assert [x for x, _ in chart.train.points] == [float(n) for n in range(1, 21)]
        assert chart.eval.points == [(20.0, 2.5)]
        assert "lr         1.200e-04" in stats_text(screen)
        assert "tokens/s   1,234" in stats_text(screen)
        assert "GPU alloc  1.25 GB\nGPU resv   2.50 GB" in stats_text(screen)
        bar = screen.query_one("#monitor-progress")
        assert (bar.progress, bar.total) == (20, 50)
        assert str(screen.query_one("#monitor-eta").render()) == "ETA 00:01:00"
        assert any("eval at step 20: loss 2.5" in line for line in log_lines(screen))
        assert "running" in status_text(screen) and "live, started here" in status_text(screen)

        await pilot.press("p")
        handle.feed({"type": "paused", "ts": T0 + 41, "step": 20})
        await wait_for(pilot, lambda: "paused" in status_text(screen))
        await pilot.press("r")
        handle.feed({"type": "resumed", "ts": T0 + 42, "step": 20})
        await wait_for(pilot, lambda: "running" in status_text(screen))
        await pilot.press("c")
        handle.feed({"type": "checkpoint", "ts": T0 + 43, "step": 20, "path": "checkpoints/step-20"})
        await wait_for(pilot, lambda: any("checkpoint at step 20" in line for line in log_lines(screen)))
        await pilot.press("x")
        await pilot.pause(0.1)
        assert handle.controls == ["pause", "resume", "save_now"], "stop must wait for the confirmation"
        await pilot.press("y")
        await wait_for(pilot, lambda: handle.controls[-1:] == ["stop"])
        handle.feed({"type": "finished", "ts": T0 + 50, "summary": {"final_loss": 2.5, "steps": 20,
                                                                     "stopped": True, "adapter_path": "adapter"}})
        handle.alive = False
        await wait_for(pilot, lambda: "stopped" in status_text(screen))
        assert str(screen.query_one("#monitor-eta").render()) == "ETA done"
        assert handle.controls == ["pause", "resume", "save_now", "stop"]


async def test_step_events_are_batched_into_few_redraws(tmp_path):
    run = make_run(tmp_path / "runs")
    handle = QueueHandle(run)
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        app.live_handle = handle
        app.open_run(run.path)
        await wait_for(pilot, lambda: opened(app))
        screen = app.screen
        batches = []
        original = screen._apply

        def counting(events, lines):
            batches.append(len(events))
            original(events, lines)

        screen._apply = counting
        handle.feed(started(500), *[step(n, 500) for n in range(1, 501)])
        await wait_for(pilot, lambda: "step       500 / 500" in stats_text(screen))
        assert sum(batches) == 501
        assert len(batches) <= 3, f"{len(batches)} redraws for one burst of events"
        assert len(screen.query_one(LossChart).train.points) == 500


async def test_past_run_opens_from_disk_and_refuses_controls(tmp_path):
    run = make_run(tmp_path / "runs")
    for event in [started(10), *[step(n, 10) for n in range(1, 11)], evaluation(10),
                  {"type": "finished", "ts": T0 + 30, "summary": {"final_loss": 2.9, "steps": 10, "stopped": False}}]:
        run.append_event(event)
    run.log_path.write_text("loading model\rloading model: done\nstep 10 done\n")
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_run(run.path)
        await wait_for(pilot, lambda: opened(app)
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
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_run(run.path)
        await wait_for(pilot, lambda: opened(app)
                       and "step       1 / 30" in stats_text(app.screen))
        screen = app.screen
        assert "following events.jsonl" in status_text(screen)
        for n in range(2, 6):
            run.append_event(step(n, 30))
        await wait_for(pilot, lambda: "step       5 / 30" in stats_text(screen))
        await pilot.press("p")
        await pilot.press("c")
        await pilot.press("x", "y")
        await wait_for(pilot, lambda: (run.path / CONTROL_FILE).exists()
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
        await wait_for(pilot, lambda: opened(app)
                       and "step       45 / 60" in stats_text(app.screen)
                       and "interrupted" in status_text(app.screen))
        app.screen.set_focus(None)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(120, 40), run_before=open_it)
