"""Dataset screen: open a file, see format, rows, problems, training text and token lengths, use it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from textual import events
from textual.widgets import DataTable, Input, ProgressBar

from tuitune.errors import TuituneError
from tuitune.hardware import FakeGpuSource
from tuitune.ui.app import TuituneApp
from tuitune.ui.screens import dataset as dataset_module
from tuitune.ui.screens.dataset import DatasetScreen, PathSuggester, TokenHistogram, known_row_count
from uifakes import wait_for

pytestmark = pytest.mark.anyio


def make_app(tmp_path: Path) -> TuituneApp:
    return TuituneApp(gpu_source=FakeGpuSource.none(), runs_root=tmp_path / "runs", remember_theme=False,
                      settings_path=tmp_path / "settings.toml")


@pytest.fixture
def default_tokenizer(default_model_dir, monkeypatch):
    """The embedded default's tokenizer from its converted folder (the UI tests' cache is a fresh tmp)."""

    def load(model: str):
        from transformers import AutoTokenizer

        assert model == "smollm2-135m-instruct"
        return AutoTokenizer.from_pretrained(str(default_model_dir))

    monkeypatch.setattr(dataset_module, "load_tokenizer_for", load)


def write_alpaca(path: Path) -> Path:
    """Twelve Alpaca rows: row 4 has an empty output, row 7 lacks `output`, row 10 repeats row 2."""
    rows = []
    for n in range(1, 13):
        rows.append({"instruction": f"What is {n} plus {n}?", "input": "", "output": f"{n} plus {n} is {2 * n}."})
    rows[3]["output"] = ""
    del rows[6]["output"]
    rows[9] = dict(rows[1])
    rows[11]["input"] = "Answer in words. " * 12
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector).render())


async def open_screen(app: TuituneApp, pilot) -> DatasetScreen:
    await app.switch_mode("dataset")
    await wait_for(pilot, lambda: isinstance(app.screen, DatasetScreen))
    return app.screen


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_open_inspect_and_use_a_dataset(tmp_path, default_tokenizer):
    data = write_alpaca(tmp_path / "train.jsonl")
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_screen(app, pilot)
        path_input = screen.query_one("#ds-path", Input)
        path_input.focus()
        path_input.value = str(data)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.report is not None, timeout=120)

        summary = text_of(screen, "#ds-summary")
        assert "file       train.jsonl" in summary
        assert "format     alpaca" in summary
        assert "rows       12 (9 usable)" in summary
        assert "max length 128 recommended (config: 1,024)" in summary
        problems = text_of(screen, "#ds-problems-text")
        assert "row 4:" in problems and "row 7:" in problems and "row 10: duplicate of row 2" in problems
        table = screen.query_one("#ds-table", DataTable)
        assert table.row_count == 12
        assert [str(c.label) for c in table.columns.values()] == ["#", "instruction", "input", "output"]
        histogram = screen.query_one(TokenHistogram)
        assert len(histogram.lengths) == 9 and max(histogram.lengths) > min(histogram.lengths)

        formatted = lambda: text_of(screen, "#ds-formatted-text")  # noqa: E731
        assert "<|im_start|>user\nWhat is 1 plus 1?<|im_end|>" in formatted()
        assert "<|im_start|>assistant\n1 plus 1 is 2.<|im_end|>" in formatted()
        table.focus()
        await pilot.press("down", "down", "down")
        await wait_for(pilot, lambda: formatted().startswith("Row 4 is not used for training"))
        assert "row 4:" in formatted()

        path_input.focus()  # the binding works from the text field too (ctrl+u there deletes)
        await pilot.press("ctrl+t")
        await pilot.pause(0.1)
        assert app.config.data.path == str(data.resolve())
        assert app.config.data.format == "alpaca"
        assert known_row_count(app.config.data.path) == 9

        await pilot.click("#ds-use-length")
        await pilot.pause(0.1)
        assert app.config.model.max_seq_length == 128
        assert histogram.limit == 128
        assert "(config: 128)" in text_of(screen, "#ds-summary")


async def test_unreadable_file_shows_the_reason(tmp_path, monkeypatch):
    bad = tmp_path / "notes.jsonl"
    bad.write_text('{"colour": "red"}\n{"colour": "blue"}\n')
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_screen(app, pilot)
        screen.open_path(str(bad))
        await wait_for(pilot, lambda: text_of(screen, "#ds-phase") == "failed")
        assert "Cannot tell the format of" in text_of(screen, "#ds-summary")
        assert screen.query_one("#ds-use").disabled


async def test_path_completion_from_the_file_system(tmp_path):
    (tmp_path / "train.jsonl").write_text("")
    (tmp_path / "trips").mkdir()
    (tmp_path / ".hidden.jsonl").write_text("")
    suggester = PathSuggester()
    assert await suggester.get_suggestion(str(tmp_path / "tra")) == str(tmp_path / "train.jsonl")
    assert await suggester.get_suggestion(str(tmp_path / "tri")) == str(tmp_path / "trips") + "/"
    assert await suggester.get_suggestion(str(tmp_path / "zzz")) is None
    assert await suggester.get_suggestion(str(tmp_path) + "/") == str(tmp_path / "train.jsonl")
    assert await suggester.get_suggestion(str(tmp_path / ".hid")) == str(tmp_path / ".hidden.jsonl")

    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_screen(app, pilot)
        path_input = screen.query_one("#ds-path", Input)
        path_input.focus()
        path_input.value = str(tmp_path / "tra")
        path_input.cursor_position = len(path_input.value)
        await pilot.pause(0.2)
        await pilot.press("right")  # accepts the suggestion, as in any Textual Input
        assert path_input.value == str(tmp_path / "train.jsonl")


def write_big_jsonl(path: Path, size: int = 100 * 1024 * 1024) -> int:
    filler = "The quick brown fox jumps over the lazy dog. " * 20
    rows = 0
    with open(path, "w") as handle:
        while handle.tell() < size:
            handle.write(json.dumps({"instruction": f"Question {rows}?", "input": "",
                                     "output": f"Answer {rows}. {filler}"}) + "\n")
            rows += 1
    return rows


@pytest.mark.timeout(120)
async def test_100_mb_file_loads_in_the_background_while_the_ui_answers_keys(tmp_path, monkeypatch):
    big = tmp_path / "big.jsonl"
    rows = write_big_jsonl(big)

    def no_tokenizer(model):
        raise TuituneError("token counting is not part of this test")

    monkeypatch.setattr(dataset_module, "load_tokenizer_for", no_tokenizer)
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_screen(app, pilot)
        bar = screen.query_one("#ds-progress", ProgressBar)
        screen.open_path(str(big))
        await wait_for(pilot, lambda: 0 < (bar.progress or 0) < (bar.total or 1), timeout=30)
        seen = {bar.progress}

        # While the worker reads, keys typed into the path field land at once. (Keys are posted as
        # a terminal would send them: Pilot.press waits for the process to go idle, which a busy
        # worker thread never lets happen.)
        path_input = screen.query_one("#ds-path", Input)
        path_input.focus()
        await pilot.pause(0.05)
        assert screen.data is None, "the file was read before the responsiveness check"
        started = time.monotonic()
        for key in "xyz":
            app.post_message(events.Key(key, key))
        await wait_for(pilot, lambda: path_input.value.endswith("xyz"), timeout=2)
        latency = time.monotonic() - started
        assert screen.data is None, "the keys were only handled after the file was read"
        print(f"three keys handled in {latency * 1000:.0f} ms while loading")
        assert latency < 1.0, f"three key presses took {latency:.2f} s while loading"

        deadline = time.monotonic() + 90
        while screen.data is None:
            assert time.monotonic() < deadline, "the 100 MB file did not load within 90 s"
            seen.add(bar.progress)
            await pilot.pause(0.05)
        assert len(seen) >= 3, f"the progress bar moved through only {sorted(seen)}"
        assert screen.data.row_count == rows
        assert screen.query_one("#ds-table", DataTable).row_count == dataset_module.TABLE_ROWS
        assert f"rows       {rows:,} ({rows:,} usable)" in text_of(screen, "#ds-summary")
        await wait_for(pilot, lambda: text_of(screen, "#ds-phase") == "no token counts")
        assert known_row_count(str(big)) == rows


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_dataset_snapshot(tmp_path, monkeypatch, snap_compare, default_tokenizer):
    write_alpaca(tmp_path / "train.jsonl")
    monkeypatch.chdir(tmp_path)
    app = make_app(tmp_path)

    async def open_it(pilot):
        screen = await open_screen(app, pilot)
        screen.query_one("#ds-path", Input).value = "train.jsonl"
        screen.open_path("train.jsonl")
        await wait_for(pilot, lambda: screen.report is not None, timeout=120)
        screen.set_focus(None)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(120, 40), run_before=open_it)


@pytest.mark.timeout(60)
async def test_opening_another_file_cancels_the_running_load(tmp_path, monkeypatch):
    big = tmp_path / "big.jsonl"
    write_big_jsonl(big, size=30 * 1024 * 1024)
    small = write_alpaca(tmp_path / "small.jsonl")

    def no_tokenizer(model):
        raise TuituneError("token counting is not part of this test")

    monkeypatch.setattr(dataset_module, "load_tokenizer_for", no_tokenizer)
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_screen(app, pilot)
        bar = screen.query_one("#ds-progress", ProgressBar)
        screen.open_path(str(big))
        await wait_for(pilot, lambda: (bar.progress or 0) > 0, timeout=20)
        big_worker = next(w for w in screen.workers if w.group == "dataset-load")
        screen.open_path(str(small))
        await wait_for(pilot, lambda: text_of(screen, "#ds-phase") == "no token counts", timeout=20)
        await wait_for(pilot, lambda: big_worker.is_finished, timeout=20)
        assert big_worker.is_cancelled
        await pilot.pause(0.3)
        assert screen.data.path.endswith("small.jsonl") and screen.data.row_count == 12
        assert "file       small.jsonl" in text_of(screen, "#ds-summary")


async def test_preference_pairs_are_shown_but_not_used_for_sft(tmp_path, monkeypatch):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Say {n}", "chosen": f"{n}!", "rejected": "no"}) + "\n"
                             for n in range(5)))

    def no_tokenizer(model):
        raise TuituneError("token counting is not part of this test")

    monkeypatch.setattr(dataset_module, "load_tokenizer_for", no_tokenizer)
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_screen(app, pilot)
        screen.open_path(str(pairs))
        await wait_for(pilot, lambda: text_of(screen, "#ds-phase") == "no token counts")
        assert "format     preference" in text_of(screen, "#ds-summary")
        assert "<chosen>\n0!" in text_of(screen, "#ds-formatted-text")
        shown: list[str] = []
        app.notify = lambda message, **kwargs: shown.append(message)
        screen.action_use()
        assert app.config.data.path == ""
        assert shown and "preference pairs" in shown[0]
