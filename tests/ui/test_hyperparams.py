"""Hyperparameters screen: validation, presets, live totals, TOML save/load, start refused or started."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuitune.config import FIELDS, Config, load_config
from tuitune.hardware import FakeGpuSource
from tuitune.runs import RunDir
from tuitune.ui.app import TuituneApp
from tuitune.ui.screens.dataset import remember_row_count
from tuitune.ui.screens.hyperparams import PRESETS, HyperparamsScreen, total_steps
from tuitune.ui.screens.monitor import MonitorScreen
from tuitune.ui.widgets.form_field import FormField
from uifakes import QueueHandle, wait_for

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600.0


class FakeFactory:
    def __init__(self) -> None:
        self.calls: list[tuple[Config, RunDir]] = []
        self.handle: QueueHandle | None = None

    def __call__(self, config, run_dir, **kwargs):
        self.calls.append((config, run_dir))
        self.handle = QueueHandle(run_dir)
        return self.handle


def make_app(tmp_path: Path, gpu_source=None, factory=None) -> TuituneApp:
    return TuituneApp(gpu_source=gpu_source or FakeGpuSource.none(), runs_root=tmp_path / "runs",
                      trainer_factory=factory, remember_theme=False, settings_path=tmp_path / "settings.toml")


async def open_form(app: TuituneApp, pilot) -> HyperparamsScreen:
    await app.switch_mode("hyperparams")
    await wait_for(pilot, lambda: isinstance(app.screen, HyperparamsScreen) and app.screen.query(FormField))
    return app.screen


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector).render())


async def set_input(pilot, screen, key: str, value: str) -> None:
    editor = screen.query_one("#edit-" + key.replace(".", "-"))
    editor.value = value
    await pilot.pause(0.05)


def test_total_steps_arithmetic():
    config = Config()
    config.training.batch_size, config.training.gradient_accumulation_steps = 2, 4
    assert total_steps(config, None) is None
    assert total_steps(config, 285) == 36          # ceil(ceil(285 / 2) / 4) = ceil(143 / 4)
    config.training.num_epochs = 2.5
    assert total_steps(config, 285) == 90
    config.data.max_rows = 100
    config.data.eval_fraction = 0.1                # 90 training rows -> 45 batches -> 12 steps/epoch
    assert total_steps(config, 285) == 30
    config.training.max_steps = 7
    assert total_steps(config, 285) == 7


async def test_every_field_has_an_editor_with_help_and_range(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(app, pilot)
        fields = {f.spec.key: f for f in screen.query(FormField)}
        assert set(fields) == set(FIELDS)
        lr = fields["training.learning_rate"]
        assert "Peak learning rate" in str(lr.query_one(".field-help").render())
        assert "1e-07 to 1" in str(lr.query_one(".field-help").render())
        assert "one of cosine, linear" in str(fields["training.lr_scheduler"].query_one(".field-help").render())
        assert type(fields["data.packing"].query_one("#edit-data-packing")).__name__ == "Switch"
        assert type(fields["model.method"].query_one("#edit-model-method")).__name__ == "Select"


async def test_invalid_field_refuses_start_with_the_reason_then_valid_form_starts(tmp_path):
    factory = FakeFactory()
    app = make_app(tmp_path, factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(app, pilot)
        await set_input(pilot, screen, "training.batch_size", "0")
        await set_input(pilot, screen, "training.learning_rate", "fast")
        assert app.config.training.batch_size == 2, "an invalid value must not reach the config"
        field = screen.query_one("#field-training-batch_size", FormField)
        assert field.has_class("-invalid")
        assert "between 1 and 4096" in text_of(field, ".field-help")

        shown: list[str] = []
        notify = app.notify
        app.notify = lambda message, **kw: (shown.append(message), notify(message, **kw))
        await pilot.press("ctrl+r")
        await pilot.pause(0.1)
        message = text_of(screen, "#hp-message")
        assert message.startswith("Not started:")
        assert "training.batch_size must be between 1 and 4096, got 0" in message
        assert "training.learning_rate must be a number, got 'fast'" in message
        assert any("training.batch_size" in m for m in shown)
        assert factory.calls == []

        await set_input(pilot, screen, "training.batch_size", "1")
        await set_input(pilot, screen, "training.learning_rate", "1e-4")
        await set_input(pilot, screen, "training.max_steps", "3")
        assert (app.config.training.batch_size, app.config.training.learning_rate) == (1, 1e-4)
        await pilot.click("#hp-start")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.run is not None)
        assert len(factory.calls) == 1
        config, run_dir = factory.calls[0]
        assert config.training.max_steps == 3 and config.training.learning_rate == 1e-4
        assert run_dir.config_path.exists()
        factory.handle.events.put({"type": "started", "ts": T0, "model": "m", "device": "cpu", "max_steps": 3})
        factory.handle.events.put({"type": "step", "ts": T0 + 1, "step": 1, "max_steps": 3, "loss": 2.0})
        monitor = app.screen
        await wait_for(pilot, lambda: "step       1 / 3" in str(monitor.query_one("#monitor-stats").render()))


async def test_cross_field_problem_refuses_start(tmp_path):
    factory = FakeFactory()
    app = make_app(tmp_path, factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(app, pilot)
        await set_input(pilot, screen, "training.eval_steps", "10")
        await set_input(pilot, screen, "data.path", str(tmp_path / "missing.jsonl"))
        await pilot.press("ctrl+r")
        await pilot.pause(0.1)
        message = text_of(screen, "#hp-message")
        assert "training.eval_steps needs data.eval_fraction > 0" in message
        assert f"data.path {tmp_path / 'missing.jsonl'} does not exist" in message
        assert factory.calls == []


async def test_presets_and_live_batch_and_step_totals(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text("")
    remember_row_count(str(data), 1000)
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(app, pilot)
        summary = lambda: text_of(screen, "#hp-summary")  # noqa: E731
        assert "batch   8 effective (2 × 4 accumulation)" in summary()
        assert "steps   by epochs" in summary()
        app.config.data.path = str(data)
        app.config_edited()
        await wait_for(pilot, lambda: "steps   125 (1000 rows × 1 epochs)" in summary())
        await set_input(pilot, screen, "training.gradient_accumulation_steps", "8")
        assert "batch   16 effective (2 × 8 accumulation)" in summary()
        assert "steps   63 (1000 rows × 1 epochs)" in summary()

        await pilot.click("#preset-quick")
        await pilot.pause(0.1)
        for key, value in PRESETS["quick"][1].items():
            assert app.config.get(key) == value, key
        assert screen.query_one("#edit-training-max_steps").value == "20"
        assert "steps   20 (max_steps)" in summary()
        await pilot.pause(0.3)
        await pilot.click("#preset-quality")
        await pilot.pause(0.1)
        assert app.config.lora.r == 64 and app.config.training.num_epochs == 3.0
        assert "batch   16 effective (4 × 4 accumulation)" in summary()
        # 1000 rows, 5% held out for eval: 950 rows / 4 = 238 batches -> 60 steps per epoch, 3 epochs
        assert "steps   180 (1000 rows × 3 epochs)" in summary()


async def test_save_and_load_config_toml(tmp_path):
    app = make_app(tmp_path)
    path = tmp_path / "run.toml"
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(app, pilot)
        await set_input(pilot, screen, "lora.r", "32")
        screen.query_one("#hp-toml-path").value = str(path)
        await pilot.click("#hp-save")
        await pilot.pause(0.1)
        assert load_config(path).lora.r == 32
        assert text_of(screen, "#hp-message") == f"Saved {path}"

        text = path.read_text().replace("r = 32", "r = 48").replace("num_epochs = 1.0", "num_epochs = 2.0")
        path.write_text(text)
        await pilot.pause(0.3)
        await pilot.click("#hp-load")
        await pilot.pause(0.2)
        assert app.config.lora.r == 48 and app.config.training.num_epochs == 2.0
        assert screen.query_one("#edit-lora-r").value == "48"
        assert screen.query_one("#edit-training-num_epochs").value == "2"

        path.write_text("[lora]\nr = 0\n")
        await pilot.pause(0.3)
        await pilot.click("#hp-load")
        await pilot.pause(0.2)
        assert app.config.lora.r == 48, "a bad file must leave the config alone"
        assert text_of(screen, "#hp-message").startswith("Could not load")


async def test_start_is_refused_when_the_run_does_not_fit_the_gpu(tmp_path):
    factory = FakeFactory()
    gpu = FakeGpuSource.h200(used_gb=124.4)  # 16 GB free on the best GPU
    app = make_app(tmp_path, gpu_source=gpu, factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(app, pilot)
        await set_input(pilot, screen, "model.name", "llama-3.1-70b")
        await wait_for(pilot, lambda: "(does not fit)" in text_of(screen, "#hp-summary"))
        await pilot.press("ctrl+r")
        await pilot.pause(0.1)
        message = text_of(screen, "#hp-message")
        assert "the run does not fit the GPU: qlora llama-3.1-70b at batch 2 x 1024 tokens" in message
        assert "16.0 GB is free" in message
        assert factory.calls == []

        await set_input(pilot, screen, "model.name", "llama-3.1-8b")
        await wait_for(pilot, lambda: "of 16.0 GB free (fits)" in text_of(screen, "#hp-summary"))
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(factory.calls) == 1)


async def test_cpu_training_has_no_gpu_memory_limit(tmp_path):
    factory = FakeFactory()
    app = make_app(tmp_path, gpu_source=FakeGpuSource.h200(used_gb=139.0), factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(app, pilot)
        await set_input(pilot, screen, "model.name", "llama-3.1-70b")
        screen.query_one("#edit-training-device").value = "cpu"
        await wait_for(pilot, lambda: "CPU training: no GPU memory limit" in text_of(screen, "#hp-summary"))
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(factory.calls) == 1)


@pytest.mark.timeout(60)
def test_hyperparams_snapshot(tmp_path, snap_compare):
    app = make_app(tmp_path)

    async def open_it(pilot):
        screen = await open_form(app, pilot)
        screen.query_one("#edit-training-batch_size").value = "0"
        await pilot.pause(0.2)
        screen.set_focus(None)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(120, 40), run_before=open_it)
