"""Hyperparameters screen: validation, presets, live totals, TOML save/load, start refused or started."""

from __future__ import annotations

import pytest

from tests.ui.pilot import SIZE, make_app, text_of, wait_until
from tuitune.config import FIELDS, load_config
from tuitune.hardware import FakeGpuSource
from tuitune.presets import PRESETS
from tuitune.ui.app import TuituneApp
from tuitune.ui.screens.hyperparams import HyperparamsScreen
from tuitune.ui.screens.monitor import MonitorScreen
from tuitune.ui.widgets.form_field import FormField

pytestmark = pytest.mark.anyio


async def open_form(app: TuituneApp, pilot) -> HyperparamsScreen:
    await app.switch_mode("hyperparams")
    await wait_until(pilot, lambda: isinstance(app.screen, HyperparamsScreen) and app.screen.query(FormField))
    return app.screen


async def set_input(pilot, screen: HyperparamsScreen, key: str, value: str) -> None:
    screen.field(key).editor.value = value
    await pilot.pause(0.05)


async def test_every_field_has_an_editor_with_help_and_range(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot)
        fields = {f.spec.key: f for f in screen.query(FormField)}
        assert set(fields) == set(FIELDS)
        lr = fields["training.learning_rate"]
        assert "Peak learning rate" in text_of(lr.help_line)
        assert "1e-07 to 1" in text_of(lr.help_line)
        assert "one of cosine, linear" in text_of(fields["training.lr_scheduler"].help_line)
        assert type(fields["data.packing"].editor).__name__ == "Switch"
        assert type(fields["model.method"].editor).__name__ == "Select"


async def test_invalid_field_refuses_start_with_the_reason_then_valid_form_starts(tmp_path):
    app = make_app(tmp_path)
    trainer = app.spawn_trainer
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot)
        await set_input(pilot, screen, "training.batch_size", "0")
        await set_input(pilot, screen, "training.learning_rate", "fast")
        assert app.config.training.batch_size == 2, "an invalid value must not reach the config"
        field = screen.field("training.batch_size")
        assert field.has_class("-invalid")
        assert "between 1 and 4096" in text_of(field.help_line)

        shown: list[str] = []
        notify = app.notify
        app.notify = lambda message, **kw: (shown.append(message), notify(message, **kw))
        await pilot.press("ctrl+r")
        await pilot.pause(0.1)
        message = text_of(screen.message)
        assert message.startswith("Not started:")
        assert "training.batch_size must be between 1 and 4096, got 0" in message
        assert "training.learning_rate must be a number, got 'fast'" in message
        assert any("training.batch_size" in m for m in shown)
        assert trainer.calls == []

        await set_input(pilot, screen, "training.batch_size", "1")
        await set_input(pilot, screen, "training.learning_rate", "1e-4")
        await set_input(pilot, screen, "training.max_steps", "3")
        assert (app.config.training.batch_size, app.config.training.learning_rate) == (1, 1e-4)
        await pilot.click(screen.start_button)
        await wait_until(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.run is not None)
        assert len(trainer.calls) == 1
        call = trainer.calls[0]
        assert call.config.training.max_steps == 3 and call.config.training.learning_rate == 1e-4
        assert call.run_dir.config_path.exists()
        monitor = app.screen
        await wait_until(pilot, lambda: "step       3 / 10" in text_of(monitor.stats))  # the fake's steps


async def test_cross_field_problem_refuses_start(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot)
        await set_input(pilot, screen, "training.eval_steps", "10")
        await set_input(pilot, screen, "data.path", str(tmp_path / "missing.jsonl"))
        await pilot.press("ctrl+r")
        await pilot.pause(0.1)
        message = text_of(screen.message)
        assert "training.eval_steps needs eval data: data.eval_fraction > 0 or data.eval_path" in message
        assert f"data.path {tmp_path / 'missing.jsonl'} does not exist" in message
        assert app.spawn_trainer.calls == []


async def test_presets_and_live_batch_and_step_totals(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text("")
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        app.remember_rows(str(data), 1000)  # as the Dataset screen does once it has read the file
        screen = await open_form(app, pilot)
        summary = lambda: text_of(screen.summary)  # noqa: E731
        assert "batch   8 effective (2 × 4 accumulation)" in summary()
        assert "steps   by epochs" in summary()
        app.config.data.path = str(data)
        app.config_edited()
        await wait_until(pilot, lambda: "steps   125 (1000 rows × 1 epochs)" in summary())
        await set_input(pilot, screen, "training.gradient_accumulation_steps", "8")
        assert "batch   16 effective (2 × 8 accumulation)" in summary()
        assert "steps   63 (1000 rows × 1 epochs)" in summary()

        await pilot.click(screen.preset_button("quick"))
        await pilot.pause(0.1)
        for key, value in PRESETS["quick"].values.items():
            assert app.config.get(key) == value, key
        assert screen.field("training.max_steps").editor.value == "20"
        assert "steps   20 (max_steps)" in summary()
        await pilot.pause(0.3)
        await pilot.click(screen.preset_button("quality"))
        await pilot.pause(0.1)
        assert app.config.lora.r == 64 and app.config.training.num_epochs == 3.0
        assert "batch   16 effective (4 × 4 accumulation)" in summary()
        # 1000 rows, 5% held out for eval: 950 rows / 4 = 238 batches -> 60 steps per epoch, 3 epochs
        assert "steps   180 (1000 rows × 3 epochs)" in summary()


async def test_save_and_load_config_toml(tmp_path):
    app = make_app(tmp_path)
    path = tmp_path / "run.toml"
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot)
        await set_input(pilot, screen, "lora.r", "32")
        screen.toml_path.value = str(path)
        await pilot.click(screen.save_button)
        await pilot.pause(0.1)
        assert load_config(path).lora.r == 32
        assert text_of(screen.message) == f"Saved {path}"

        text = path.read_text().replace("r = 32", "r = 48").replace("num_epochs = 1.0", "num_epochs = 2.0")
        path.write_text(text)
        await pilot.pause(0.3)
        await pilot.click(screen.load_button)
        await pilot.pause(0.2)
        assert app.config.lora.r == 48 and app.config.training.num_epochs == 2.0
        assert screen.field("lora.r").editor.value == "48"
        assert screen.field("training.num_epochs").editor.value == "2"

        path.write_text("[lora]\nr = 0\n")
        await pilot.pause(0.3)
        await pilot.click(screen.load_button)
        await pilot.pause(0.2)
        assert app.config.lora.r == 48, "a bad file must leave the config alone"
        assert text_of(screen.message).startswith("Could not load")


async def test_start_is_refused_when_the_run_does_not_fit_the_gpu(tmp_path):
    gpu = FakeGpuSource.h200(used_gb=124.4)  # 16 GB free on the GPU
    app = make_app(tmp_path, gpu_source=gpu)
    trainer = app.spawn_trainer
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot)
        await set_input(pilot, screen, "model.name", "llama-3.1-70b")
        await wait_until(pilot, lambda: "(does not fit)" in text_of(screen.summary))
        await pilot.press("ctrl+r")
        await pilot.pause(0.1)
        message = text_of(screen.message)
        assert "the run does not fit the GPU: qlora llama-3.1-70b at batch 2 x 1024 tokens" in message
        assert "16.0 GB is free" in message
        assert trainer.calls == []

        await set_input(pilot, screen, "model.name", "llama-3.1-8b")
        await wait_until(pilot, lambda: "of 16.0 GB free (fits)" in text_of(screen.summary))
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: len(trainer.calls) == 1)


async def test_cpu_training_has_no_gpu_memory_limit(tmp_path):
    app = make_app(tmp_path, gpu_source=FakeGpuSource.h200(used_gb=139.0))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot)
        await set_input(pilot, screen, "model.name", "llama-3.1-70b")
        screen.field("training.device").editor.value = "cpu"
        await wait_until(pilot, lambda: "CPU training: no GPU memory limit" in text_of(screen.summary))
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: len(app.spawn_trainer.calls) == 1)


@pytest.mark.timeout(60)
def test_hyperparams_snapshot(tmp_path, snap_compare):
    app = make_app(tmp_path)

    async def open_it(pilot):
        screen = await open_form(app, pilot)
        screen.field("training.batch_size").editor.value = "0"
        await pilot.pause(0.2)
        screen.set_focus(None)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=open_it)
