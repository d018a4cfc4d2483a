"""With the optional llama.cpp extra installed: K-quant GGUF exports through its quantizer, verified by a
llama.cpp reload, and `.gguf` files chat through llama.cpp automatically (skipped without the extra)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuitune.chat import open_engine, preset, resolve_target
from tuitune.export.formats import ExportRequest
from tuitune.export.runner import run_export

pytestmark = pytest.mark.slow
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def q6_export(request, tmp_path_factory):
    from tuitune.chat.llamacpp_engine import llamacpp_available, llamacpp_works
    from tuitune.model_source import resolve_model_source

    if not llamacpp_available():
        pytest.skip("llama-cpp-python (tuitune[llamacpp]) is not installed")
    if not llamacpp_works(str(resolve_model_source("smollm2-135m-instruct").path)):
        pytest.skip("llama.cpp is installed but crashes generating from the embedded default (see NOTES.md)")
    smol_export_run = request.getfixturevalue("smol_export_run")
    out = tmp_path_factory.mktemp("q6") / "gguf-q6_k"
    return run_export(ExportRequest(str(smol_export_run), "gguf", "q6_k", output=str(out)))


def test_a_k_quant_is_written_by_llamacpp_and_verified_by_a_llamacpp_reload(q6_export):
    from gguf import GGUFReader

    from tuitune.export.modelfile import parse_stops

    file = Path(q6_export.main_file)
    assert file.name.endswith("-q6_k.gguf") and 60e6 < q6_export.size_bytes < 160e6
    assert not list(file.parent.glob(".*tmp*"))  # the f16 intermediate is gone
    assert "tokenizer.chat_template" in GGUFReader(file).fields
    assert parse_stops((file.parent / "Modelfile").read_text()) == ["<|im_end|>"]
    assert any("GGUF file (llama.cpp)" in check for check in q6_export.checks)
    assert q6_export.answers["export"] == q6_export.answers["tuned model"] == "The capital of France is Paris."


def test_gguf_files_chat_through_llamacpp_and_stop_at_the_end_of_turn(q6_export):
    engine = open_engine(resolve_target(q6_export.main_file))  # auto: llama.cpp for .gguf when installed
    assert engine.name == "llama.cpp" and not engine.has_adapter
    pieces, finished = [], None
    for event in engine.stream(FRANCE, preset("greedy", max_new_tokens=48)):
        if hasattr(event, "stats"):
            finished = event
        else:
            pieces.append(event.text)
    assert len(pieces) >= 3 and finished.text == "The capital of France is Paris."
    assert finished.stats.stop_reason == "eos" and finished.stats.tokens_per_s > 0
