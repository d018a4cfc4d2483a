"""End to end: fill the form, start a tiny real training run, watch its steps arrive on the monitor."""

from __future__ import annotations

import pytest

from tests.ui.pilot import SIZE, make_app, text_of, wait_until
from tuitune.runs import RunDir
from tuitune.trainer import launcher
from tuitune.ui.screens.hyperparams import HyperparamsScreen
from tuitune.ui.screens.monitor import MonitorScreen
from tuitune.ui.widgets.form_field import FormField

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.mark.timeout(240)
async def test_form_starts_a_real_run_and_the_monitor_shows_its_steps(tmp_path, tiny_model_dir):
    app = make_app(tmp_path, spawn_trainer=launcher.spawn)  # the real trainer, in a spawned process
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
    async with app.run_test(size=SIZE) as pilot:
        try:
            await app.switch_mode("hyperparams")
            await wait_until(pilot, lambda: isinstance(app.screen, HyperparamsScreen) and app.screen.query(FormField),
                             timeout=20)
            form = app.screen
            for key, value in values.items():
                form.field(key).editor.value = value
            form.field("training.use_kernels").editor.value = False
            await pilot.pause(0.3)
            assert form.problems == {}
            assert app.config.training.max_steps == 2 and app.config.model.name == str(tiny_model_dir)

            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.run is not None,
                             timeout=30)
            monitor = app.screen
            assert app.live_handle is not None
            stats = lambda: text_of(monitor.stats)  # noqa: E731
            status = lambda: text_of(monitor.status_bar)  # noqa: E731
            await wait_until(pilot, lambda: "step       2 / 2" in stats(), timeout=180)
            await wait_until(pilot, lambda: "finished" in status() or "stopped" in status(), timeout=60)

            chart = monitor.chart
            assert [step for step, _ in chart.train.points] == [1.0, 2.0]
            assert all(loss > 0 for _, loss in chart.train.points)
            assert "live, started here" in status()
            assert "GB (no GPU)" in stats()  # CPU run: the trainer reports its RSS
            log = "\n".join(monitor.run_log.lines)
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
