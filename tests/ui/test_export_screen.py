"""Export screen: open a run from Runs or Monitor, quantizations per format, progress from the export
process, the result's path and size, failures, the llama.cpp install offer, cancel and push."""

from __future__ import annotations

import pytest
from textual.widgets import Select

from tests.ui.fakes import FakeExports, export_result
from tests.ui.pilot import SIZE, make_app, text_of, wait_until
from tuitune.ui.widgets.confirm import ConfirmModal

pytestmark = pytest.mark.anyio
FINISHED = "20251129-100000-smollm2-sample"


@pytest.fixture
def runs_root(runs_root):
    adapter = runs_root / FINISHED / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "smollm2-135m-instruct"}')
    return runs_root


@pytest.fixture(autouse=True)
def no_llamacpp(monkeypatch):
    """Whether or not llama-cpp-python is installed here, the screen sees it missing."""
    from tuitune.export import extras

    monkeypatch.setattr(extras, "available", lambda name: False)


async def open_export(pilot, app, runs_root):
    await pilot.press("f7")
    await wait_until(pilot, lambda: app.screen.table.row_count == 3, 5, "the runs")
    app.screen.table.move_cursor(row=2)
    await pilot.press("e")
    await wait_until(pilot, lambda: app.current_mode == "export" and app.screen.query("#export-target")
                     and app.screen.value("target"), 5, "the target")
    return app.screen


def notes(app) -> str:
    return " ".join(str(n.message) for n in app._notifications)


async def test_runs_key_e_exports_with_progress_then_path_and_size(tmp_path, runs_root):
    exports = FakeExports()
    app = make_app(tmp_path, runs_root=runs_root, start_export=exports)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_export(pilot, app, runs_root)
        assert screen.value("target") == str(runs_root / FINISHED)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: exports.handles, 5, "the export process")
        handle = exports.handles[0]
        request = handle.request
        assert (request.target, request.format, request.resolved_quant, request.push) == (
            str(runs_root / FINISHED), "gguf", "q8_0", None)
        assert handle.log_path == runs_root / FINISHED / "exports" / "export.log"
        handle.feed({"kind": "progress", "fraction": 0.4, "message": "writing the GGUF file (q8_0)"})
        await wait_until(pilot, lambda: screen.progress.progress == pytest.approx(0.4), 5, "progress")
        assert "writing the GGUF file" in text_of(screen.phase)
        folder = runs_root / FINISHED / "exports" / "gguf-q8_0"
        handle.feed({"kind": "done", "result": export_result(folder)})
        await wait_until(pilot, lambda: screen.result is not None, 5, "the result")
        shown = text_of(screen.result_panel)
        assert str(folder / "run-q8_0.gguf") in shown and "size: 138.1 MB (4 files)" in shown
        assert "export:      The capital of France is Paris." in shown and screen.busy is None


async def test_formats_offer_their_quantizations(tmp_path, runs_root):
    app = make_app(tmp_path, runs_root=runs_root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_export(pilot, app, runs_root)
        quant = screen.query_one("#export-quant", Select)
        for fmt, first, count in (("merged", "bf16", 2), ("gguf", "q8_0", 6), ("gptq", "4bit", 1)):
            screen.query_one("#export-format", Select).value = fmt
            await wait_until(pilot, lambda: quant.value == first, 5, f"{fmt} quantizations")
            assert len(quant._options) - quant._allow_blank == count and not quant.disabled
        screen.query_one("#export-format", Select).value = "adapter"
        await wait_until(pilot, lambda: quant.disabled, 5, "no quantization for adapter")
        assert "model card" in text_of(screen.query_one("#export-help"))
        assert screen.request().resolved_quant is None


async def test_a_failed_export_is_shown_and_the_screen_stays_usable(tmp_path, runs_root):
    exports = FakeExports()
    app = make_app(tmp_path, runs_root=runs_root, start_export=exports)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_export(pilot, app, runs_root)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: exports.handles, 5)
        message = ("GPTQ export needs a CUDA GPU (gptqmodel quantizes on the GPU), and this machine has none. "
                   "Nothing was exported.")
        exports.handles[0].feed({"kind": "failed", "message": message})
        await wait_until(pilot, lambda: screen.busy is None, 5)
        assert message in text_of(screen.result_panel) and "CUDA GPU" in notes(app)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: len(exports.handles) == 2, 5, "a second export")


async def test_escape_cancels_the_export(tmp_path, runs_root):
    exports = FakeExports()
    app = make_app(tmp_path, runs_root=runs_root, start_export=exports)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_export(pilot, app, runs_root)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: exports.handles, 5)
        await pilot.press("escape")
        assert exports.handles[0].cancelled and screen.busy is None
        assert "cancelled" in text_of(screen.result_panel)


async def test_a_k_quant_without_llamacpp_offers_the_install_then_exports(tmp_path, runs_root, monkeypatch):
    from tuitune.export import extras

    installed = []
    monkeypatch.setattr(extras, "install", lambda name, log: installed.append((name, log)))
    exports = FakeExports()
    app = make_app(tmp_path, runs_root=runs_root, start_export=exports)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_export(pilot, app, runs_root)
        screen.query_one("#export-quant", Select).value = "q5_k_m"
        await pilot.pause()
        assert "needs llama.cpp" in text_of(screen.query_one("#export-help"))
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the install offer")
        assert "llama-cpp-python" in app.screen.question
        monkeypatch.setattr(extras, "available", lambda name: True)  # what the install achieves
        await pilot.press("y")
        await wait_until(pilot, lambda: exports.handles, 5, "the export after the install")
        assert installed[0][0] == "llamacpp" and exports.handles[0].request.resolved_quant == "q5_k_m"


async def test_declining_the_install_exports_nothing(tmp_path, runs_root):
    exports = FakeExports()
    app = make_app(tmp_path, runs_root=runs_root, start_export=exports)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_export(pilot, app, runs_root)
        screen.query_one("#export-quant", Select).value = "q4_k_m"
        await pilot.pause()
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), 5)
        await pilot.press("n")
        await pilot.pause()
        assert exports.handles == [] and screen.busy is None


async def test_push_offline_fails_at_once_and_uploads_nothing(tmp_path, runs_root, monkeypatch):
    from tuitune.export import push

    uploads = []
    monkeypatch.setattr(push, "push_folder", lambda *a, **k: uploads.append(a))
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token_123")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    exports = FakeExports()
    app = make_app(tmp_path, runs_root=runs_root, start_export=exports)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_export(pilot, app, runs_root)
        await pilot.press("ctrl+t")
        assert "Type the Hub repo" in notes(app)
        screen.query_one("#export-repo").value = "someone/pirate-smol"
        await pilot.press("ctrl+t")
        assert "Nothing to push yet" in notes(app)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: exports.handles, 5)
        assert exports.handles[0].request.push == "someone/pirate-smol"
        exports.handles[0].feed({"kind": "done", "result": export_result(tmp_path / "gguf-q8_0")})
        await wait_until(pilot, lambda: screen.result is not None, 5)
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: screen.busy is None and "push failed" in text_of(screen.phase), 5)
        assert "not reachable (HF_HUB_OFFLINE is set)" in text_of(screen.result_panel)
        assert uploads == [] and "hf_not_a_real_token_123" not in notes(app)


async def test_push_uploads_the_last_export(tmp_path, runs_root, monkeypatch):
    from tuitune.export import push

    uploads = []
    monkeypatch.setattr(push, "check_push", lambda repo: "tok")
    monkeypatch.setattr(push, "push_folder", lambda folder, repo, token, message: uploads.append(
        (folder, repo)) or f"https://huggingface.co/{repo}")
    exports = FakeExports()
    app = make_app(tmp_path, runs_root=runs_root, start_export=exports)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_export(pilot, app, runs_root)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: exports.handles, 5)
        exports.handles[0].feed({"kind": "done", "result": export_result(tmp_path / "gguf-q8_0")})
        await wait_until(pilot, lambda: screen.result is not None, 5)
        screen.query_one("#export-repo").value = "someone/pirate-smol"
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: screen.busy is None and uploads, 5)
        assert uploads == [(tmp_path / "gguf-q8_0", "someone/pirate-smol")]
        assert "pushed: https://huggingface.co/someone/pirate-smol" in text_of(screen.result_panel)


async def test_monitor_key_e_opens_the_shown_run_for_export(tmp_path, runs_root):
    app = make_app(tmp_path, runs_root=runs_root)
    async with app.run_test(size=SIZE) as pilot:
        app.open_run(runs_root / FINISHED)
        await wait_until(pilot, lambda: app.current_mode == "monitor" and app.screen.run_path is not None, 5)
        await pilot.press("e")
        await wait_until(pilot, lambda: app.current_mode == "export" and app.screen.query("#export-target")
                         and app.screen.value("target"), 5)
        assert app.screen.value("target") == str(runs_root / FINISHED)
