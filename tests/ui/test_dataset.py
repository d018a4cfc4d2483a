"""Dataset screen: open a file, see format, rows, problems, training text and token lengths, use it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from textual import events

from tests.ui.pilot import SIZE, make_app, text_of, wait_until
from tuitune import model_source
from tuitune.errors import TuituneError
from tuitune.ui.app import TuituneApp
from tuitune.ui.screens.dataset import DatasetScreen
from tuitune.ui.widgets.raw_rows import TABLE_ROWS
from tuitune.ui.widgets.path_suggester import PathSuggester

pytestmark = pytest.mark.anyio


@pytest.fixture
def default_tokenizer(default_model_dir, monkeypatch):
    """The embedded default's tokenizer from its converted folder (the UI tests' cache is a fresh tmp)."""

    def load(model: str):
        from transformers import AutoTokenizer

        assert model == "smollm2-135m-instruct"
        return AutoTokenizer.from_pretrained(str(default_model_dir))

    monkeypatch.setattr(model_source, "load_tokenizer", load)


@pytest.fixture
def no_tokenizer(monkeypatch):
    """Token counting fails at once: the tests that use this are about reading rows."""

    def load(model: str):
        raise TuituneError("token counting is not part of this test")

    monkeypatch.setattr(model_source, "load_tokenizer", load)


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


async def open_screen(app: TuituneApp, pilot) -> DatasetScreen:
    await app.switch_mode("dataset")
    await wait_until(pilot, lambda: isinstance(app.screen, DatasetScreen))
    return app.screen


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_open_inspect_and_use_a_dataset(tmp_path, default_tokenizer):
    data = write_alpaca(tmp_path / "train.jsonl")
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(app, pilot)
        path_input = screen.path_input
        path_input.focus()
        path_input.value = str(data)
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.report is not None, timeout=120)

        summary = text_of(screen.summary)
        assert "file       train.jsonl" in summary
        assert "format     alpaca" in summary
        assert "rows       12 (9 usable)" in summary
        assert "max length 128 recommended (config: 1,024)" in summary
        problems = text_of(screen.problems_text)
        assert "row 4:" in problems and "row 7:" in problems and "row 10: duplicate of row 2" in problems
        table = screen.table
        assert table.row_count == 12
        assert [str(c.label) for c in table.columns.values()] == ["#", "instruction", "input", "output"]
        histogram = screen.histogram
        assert len(histogram.lengths) == 9 and max(histogram.lengths) > min(histogram.lengths)

        formatted = lambda: text_of(screen.formatted)  # noqa: E731
        assert "<|im_start|>user\nWhat is 1 plus 1?<|im_end|>" in formatted()
        assert "<|im_start|>assistant\n1 plus 1 is 2.<|im_end|>" in formatted()
        table.focus()
        await pilot.press("down", "down", "down")
        await wait_until(pilot, lambda: formatted().startswith("Row 4 is not used for training"))
        assert "row 4:" in formatted()

        path_input.focus()  # the binding works from the text field too (ctrl+u there deletes)
        await pilot.press("ctrl+t")
        await pilot.pause(0.1)
        assert app.config.data.path == str(data.resolve())
        assert app.config.data.format == "alpaca"
        assert app.known_rows(app.config.data.path) == 9

        await pilot.click(screen.use_length_button)
        await pilot.pause(0.1)
        assert app.config.model.max_seq_length == 128
        assert histogram.limit == 128
        assert "(config: 128)" in text_of(screen.summary)


async def test_unreadable_file_shows_the_reason(tmp_path):
    bad = tmp_path / "notes.jsonl"
    bad.write_text('{"colour": "red"}\n{"colour": "blue"}\n')
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(app, pilot)
        screen.open_path(str(bad))
        await wait_until(pilot, lambda: text_of(screen.phase) == "failed")
        assert "Cannot tell the format of" in text_of(screen.summary)
        assert screen.use_button.disabled


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
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(app, pilot)
        path_input = screen.path_input
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


# CI reads 100 MB; TUITUNE_DATASET_TEST_MB=1024 runs the same test on a 1 GB file (NOTES.md has
# the numbers of that run).
BIG_MB = int(os.environ.get("TUITUNE_DATASET_TEST_MB", "100"))


@pytest.mark.timeout(120 + 2 * BIG_MB)
async def test_100_mb_file_loads_in_the_background_while_the_ui_answers_keys(tmp_path, no_tokenizer):
    big = tmp_path / "big.jsonl"
    rows = write_big_jsonl(big, BIG_MB * 1024 * 1024)

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(app, pilot)
        bar = screen.progress
        started = time.monotonic()
        screen.open_path(str(big))
        await wait_until(pilot, lambda: 0 < (bar.progress or 0) < (bar.total or 1), timeout=30)
        seen = {bar.progress}

        # While the worker reads, keys typed into the path field land before the file is read, and
        # the bar keeps moving after them: what a user sees. No timing bound: on a shared 2-core
        # machine the keys' share of the load time varied from a third to 0.59 (CI, 2026-12-05), so
        # "handled before the load ended" is the property checked.
        # (Keys are posted as a terminal sends them: Pilot.press waits for the process to go
        # idle, which a busy worker thread never lets happen.)
        path_input = screen.path_input
        path_input.focus()
        await pilot.pause(0.05)
        assert screen.data is None, "the file was read before the responsiveness check"
        typed = time.monotonic()
        for key in "xyz":
            app.post_message(events.Key(key, key))

        def typed_while_sampling_the_bar() -> bool:  # a slow machine may spend most of the load here
            seen.add(bar.progress)
            return path_input.value.endswith("xyz")

        await wait_until(pilot, typed_while_sampling_the_bar, timeout=60)
        latency = time.monotonic() - typed
        assert screen.data is None, "the keys were only handled after the file was read"

        deadline = time.monotonic() + 60 + BIG_MB
        while screen.data is None:
            assert time.monotonic() < deadline, f"the {BIG_MB} MB file did not load in time"
            seen.add(bar.progress)
            await pilot.pause(0.05)
        loading = time.monotonic() - started
        print(f"{BIG_MB} MB, {rows:,} rows read in {loading:.1f} s; three keys handled in "
              f"{latency * 1000:.0f} ms while loading")
        assert len(seen) >= 3, f"the progress bar moved through only {sorted(seen)}"
        assert screen.data.row_count == rows
        assert screen.table.row_count == TABLE_ROWS
        assert f"rows       {rows:,} ({rows:,} usable)" in text_of(screen.summary)
        await wait_until(pilot, lambda: text_of(screen.phase) == "no token counts")
        assert app.known_rows(str(big)) == rows


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_dataset_snapshot(tmp_path, monkeypatch, snap_compare, default_tokenizer):
    write_alpaca(tmp_path / "train.jsonl")
    monkeypatch.chdir(tmp_path)
    app = make_app(tmp_path)

    async def open_it(pilot):
        screen = await open_screen(app, pilot)
        screen.path_input.value = "train.jsonl"
        screen.open_path("train.jsonl")
        await wait_until(pilot, lambda: screen.report is not None, timeout=120)
        screen.set_focus(None)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=open_it)


@pytest.mark.timeout(60)
async def test_opening_another_file_cancels_the_running_load(tmp_path, no_tokenizer, monkeypatch):
    import threading

    import tuitune.data
    import tuitune.ui.screens.dataset as dataset_screen

    big = tmp_path / "big.jsonl"
    write_big_jsonl(big, size=30 * 1024 * 1024)
    small = write_alpaca(tmp_path / "small.jsonl")
    # The big file's load holds once it has made progress until the small one is opened: on a quiet
    # machine 30 MB would otherwise be read before the test could open the other file.
    opened_small = threading.Event()
    load_rows = tuitune.data.load_rows

    def held_load(path, *args, progress=None, **kwargs):
        def held(done, total):
            progress(done, total)
            if str(path) == str(big) and done > 0:
                opened_small.wait(20)
        return load_rows(path, *args, progress=held if progress else None, **kwargs)

    monkeypatch.setattr(tuitune.data, "load_rows", held_load)
    monkeypatch.setattr(dataset_screen, "PROGRESS_INTERVAL", 0.0)  # every report reaches the bar
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(app, pilot)
        bar = screen.progress
        screen.open_path(str(big))
        await wait_until(pilot, lambda: (bar.progress or 0) > 0, timeout=20)
        big_worker = next(w for w in screen.workers if w.group == "dataset-load")
        screen.open_path(str(small))
        opened_small.set()
        await wait_until(pilot, lambda: text_of(screen.phase) == "no token counts", timeout=20)
        await wait_until(pilot, lambda: big_worker.is_finished, timeout=20)
        assert big_worker.is_cancelled
        await pilot.pause(0.3)
        assert screen.data.path.endswith("small.jsonl") and screen.data.row_count == 12
        assert "file       small.jsonl" in text_of(screen.summary)


async def test_preference_pairs_are_shown_and_used_for_dpo(tmp_path, no_tokenizer):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Say {n}", "chosen": f"{n}!", "rejected": "no"}) + "\n"
                             for n in range(5)))

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(app, pilot)
        screen.open_path(str(pairs))
        await wait_until(pilot, lambda: text_of(screen.phase) == "no token counts")
        assert "format     preference" in text_of(screen.summary)
        assert "<chosen>\n0!" in text_of(screen.formatted)
        screen.action_use()  # training.objective auto then picks DPO (tuitune.objective)
        assert app.config.data.path == str(pairs.resolve()) and app.config.data.format == "preference"


async def test_cells_show_square_brackets_as_written(tmp_path, no_tokenizer):
    """Llama-2 style `[INST] ... [/INST]` and Rich-markup-looking text are data, not markup: the table
    shows them as written (a closing tag without an opening one used to stop the screen)."""
    data = tmp_path / "inst.jsonl"
    rows = [{"instruction": "[INST] Say hi [/INST]", "output": "[bold]hi[/bold] and [red]"},
            {"instruction": "plain", "output": "[/]"}]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(app, pilot)
        screen.open_path(str(data))
        await wait_until(pilot, lambda: text_of(screen.phase) == "no token counts")
        await pilot.pause(0.1)
        shown = app.export_screenshot()
        assert "[INST] Say hi [/INST]" in shown.replace("&#160;", " ")
        table = screen.table
        assert [str(table.get_cell_at((0, i))) for i in range(1, 3)] == [
            "[INST] Say hi [/INST]", "[bold]hi[/bold] and [red]"]
        assert app.is_running
