"""Dataset screen: a JSON file cut off part-way offers Salvage; columns no format fits offer a
column mapping, showing the columns seen. Either choice goes into the config with the dataset."""

from __future__ import annotations

import json

import pytest

from tests.ui.pilot import SIZE, make_app, text_of, wait_until
from tests.ui.test_dataset import no_tokenizer, open_screen  # noqa: F401 (a fixture)

pytestmark = pytest.mark.anyio


def cut_off_json(path, records: int) -> str:
    """A JSON array of `records` complete Alpaca records and half of one more."""
    rows = [{"instruction": f"Say {n}", "input": "", "output": f"{n}!"} for n in range(records + 1)]
    text = json.dumps(rows, indent=1)
    path.write_text(text[: text.rindex('"output"')])
    return str(path)


async def test_a_cut_off_file_is_explained_and_its_complete_records_salvaged(tmp_path, no_tokenizer):
    path = cut_off_json(tmp_path / "dump.json", 7)
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(app, pilot)
        screen.path_input.value = path
        screen.action_open()
        await wait_until(pilot, lambda: text_of(screen.phase) == "failed")
        summary = text_of(screen.summary)
        assert "is cut off" in summary and "The 7 records before the break are complete" in summary, summary
        repair = screen.repair
        assert repair.display and str(repair.salvage_button.label) == "Salvage 7 records"
        assert not repair.query_one("#repair-map-row").display

        await pilot.click("#repair-salvage")
        await wait_until(pilot, lambda: text_of(screen.phase) == "no token counts")
        assert not repair.display
        assert screen.data.row_count == 7 and screen.table.row_count == 7
        assert "salvage" in text_of(screen.summary).lower()
        screen.action_use()
        assert app.config.data.path == path and app.config.data.salvage is True


async def test_unknown_columns_offer_a_mapping_that_trains(tmp_path, no_tokenizer):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"id": n, "question": f"What is {n}+{n}?", "answer": str(2 * n)}) + "\n"
                            for n in range(5)))
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(app, pilot)
        screen.path_input.value = str(path)
        screen.action_open()
        await wait_until(pilot, lambda: text_of(screen.phase) == "failed")
        repair = screen.repair
        assert repair.display and not repair.query_one("#repair-salvage-row").display
        assert "Columns seen: id, question, answer" in text_of(repair.text)
        assert repair.map_input.value == "instruction=question,output=answer"

        repair.map_input.value = "instruction=question,output=nope"   # a typo: said, nothing lost
        await pilot.click("#repair-map")
        await wait_until(pilot, lambda: text_of(screen.phase) == "failed" and repair.display)
        assert "no such column" in text_of(screen.summary)
        assert repair.map_input.value == "instruction=question,output=nope"  # kept to fix
        await pilot.pause(0.2)  # the panel shown again is laid out before the click aims at it

        repair.map_input.value = "instruction=question,output=answer"
        await pilot.click("#repair-map")
        await wait_until(pilot, lambda: text_of(screen.phase) == "no token counts")
        assert screen.data.format == "alpaca" and screen.data.usable_rows == 5
        assert "<assistant>\n0" in text_of(screen.formatted)
        screen.action_use()
        assert app.config.data.columns == "instruction=question,output=answer"
        assert app.config.data.salvage is False

        # Opened again as the config's dataset, it is read with the config's mapping at once.
        screen.action_open()
        await wait_until(pilot, lambda: text_of(screen.phase) == "no token counts")
        assert screen.data.usable_rows == 5 and not repair.display


async def test_a_bad_mapping_text_is_refused_with_a_toast(tmp_path, no_tokenizer):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(app, pilot)
        screen.open_path(str(path))
        await wait_until(pilot, lambda: text_of(screen.phase) == "failed")
        shown: list[str] = []
        app.notify = lambda message, **kwargs: shown.append(message)
        screen.repair.map_input.value = "question"
        await pilot.click("#repair-map")
        await pilot.pause(0.1)
        assert shown and "'question' is not name=column" in shown[0]
