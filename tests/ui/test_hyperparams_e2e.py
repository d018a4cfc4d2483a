"""End to end: fill the form, start a tiny real training run, watch its steps arrive on the monitor."""

from __future__ import annotations

import time

import pytest

from tuitune.hardware import FakeGpuSource
from tuitune.runs import RunDir
from tuitune.ui.app import TuituneApp
from tuitune.ui.screens.hyperparams import HyperparamsScreen
from tuitune.ui.screens.monitor import MonitorScreen
from tuitune.ui.widgets.form_field import FormField
from tuitune.ui.widgets.loss_chart import LossChart

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def wait_for(pilot, predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await pilot.pause(0.2)


@pytest.mark.timeout(240)
async def test_form_starts_a_real_run_and_the_monitor_shows_its_steps(tmp_path, tiny_model_dir):
    # The real trainer factory (tuitune.trainer.launcher.start_training in a spawned process).
    app = TuituneApp(gpu_source=FakeGpuSource.none(), runs_root=tmp_path / "runs", remember_theme=False,
                     settings_path=tmp_path / "settings.toml")
    values = {
        "model.name": str(tiny_model_dir),
        "model.max_seq_length": "64",
        "data.max_rows": "16",
        "training.max_steps": "2",
        "training.batch_size": "1",
        "training.gradient_accumulation_steps": "1",
        "training.warmup_steps": "0",
        "training.optimizer": "adamw_torch",
        "training.gradient_checkpointing": "none",
        "training.device": "cpu",
        "output.dir": str(tmp_path / "runs"),
    }
    async with app.run_test(size=(120, 40)) as pilot:
        try:
            await app.switch_mode("hyperparams")
            await wait_for(pilot, lambda: isinstance(app.screen, HyperparamsScreen) and app.screen.query(FormField),
                           timeout=20)
            form = app.screen
            for key, value in values.items():
                form.query_one("#edit-" + key.replace(".", "-")).value = value
            form.query_one("#edit-training-use_kernels").value = False
            await pilot.pause(0.3)
            assert form.problems == {}
            assert app.config.training.max_steps == 2 and app.config.model.name == str(tiny_model_dir)

            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.run is not None,
                           timeout=30)
            monitor = app.screen
            assert app.live_handle is not None
            stats = lambda: str(monitor.query_one("#monitor-stats").render())  # noqa: E731
            status = lambda: str(monitor.query_one("#monitor-status").render())  # noqa: E731
            await wait_for(pilot, lambda: "step       2 / 2" in stats(), timeout=180)
            await wait_for(pilot, lambda: "finished" in status() or "stopped" in status(), timeout=60)

            chart = monitor.query_one(LossChart)
            assert [step for step, _ in chart.train.points] == [1.0, 2.0]
            assert all(loss > 0 for _, loss in chart.train.points)
            assert "live, started here" in status()
            assert "GB (no GPU)" in stats()  # CPU run: the trainer reports its RSS
            log = "\n".join(monitor.query_one("#monitor-log").lines)
            assert "started " in log and "finished after 2 steps" in log
            run = RunDir(monitor.run_path)
            steps = [e for e in run.events() if e["type"] == "step"]
            assert [e["step"] for e in steps] == [1, 2]
            assert run.adapter_dir.exists()
        finally:
            handle = app.live_handle
            if handle is not None and handle.is_alive():
                handle.terminate()
                handle.join(10)
