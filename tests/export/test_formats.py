"""Every export format that runs on a CPU, each verified by reload, and for each one that the chat template
and EOS survive: the exported model answers the fixed prompt as the trained one does and stops there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuitune.chat import open_engine, preset, resolve_target
from tuitune.errors import TuituneError
from tuitune.export.formats import ExportRequest
from tuitune.export.runner import run_export

pytestmark = pytest.mark.slow
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
IM_END = "<|im_end|>"


def trained_answer(run: Path):
    """The trained model's own greedy answer (adapter on the base), through the chat engine."""
    engine = open_engine(resolve_target(str(run)), "transformers")
    return engine.generate(FRANCE, preset("greedy", max_new_tokens=48))


def assert_stops_where_trained_stops(export_ref: Path, trained, engine: str = "transformers") -> None:
    exported = open_engine(resolve_target(str(export_ref)), engine).generate(FRANCE, preset("greedy", max_new_tokens=48))
    assert trained.stats.stop_reason == "eos"
    assert (exported.text, exported.stats.stop_reason) == (trained.text, "eos")
    assert exported.stats.new_tokens == trained.stats.new_tokens  # the same answer, then the end of turn


def test_adapter_export_has_weights_config_tokenizer_template_and_card(smol_export_run, tmp_path):
    out = tmp_path / "adapter"
    result = run_export(ExportRequest(str(smol_export_run), "adapter", output=str(out)))
    assert Path(result.path) == out and result.size_bytes > 1_000_000
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
                 "tuitune.toml", "README.md", "export.json"):
        assert (out / name).exists(), name
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    template = tokenizer_config.get("chat_template") or (out / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template and tokenizer_config["eos_token"] == IM_END
    card = (out / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "| final training loss | 0.4321 |" in card
    assert "| data |" in card
    assert any("max |diff| 0 " in check for check in result.checks)
    assert_stops_where_trained_stops(out, trained_answer(smol_export_run))


def test_merged_export_is_a_16_bit_folder_whose_logits_match(smol_export_run, tmp_path):
    out = tmp_path / "merged"
    result = run_export(ExportRequest(str(smol_export_run), "merged", "f16", output=str(out)))
    assert json.loads((out / "config.json").read_text())["dtype"] == "float16"
    assert 200e6 < result.size_bytes < 320e6  # 135M parameters in 2 bytes, not 4
    assert not (out / "adapter_config.json").exists()
    assert any(c.startswith("logits (reloaded folder)") and "float16" in c for c in result.checks)
    generation = json.loads((out / "generation_config.json").read_text())
    assert 2 in (generation["eos_token_id"] if isinstance(generation["eos_token_id"], list)
                 else [generation["eos_token_id"]])  # <|im_end|>
    assert_stops_where_trained_stops(out, trained_answer(smol_export_run))


def test_gguf_q8_0_keeps_template_eos_and_stops_with_a_modelfile(smol_export_run, tmp_path):
    from gguf import GGUFReader

    from tuitune.export.modelfile import parse_stops

    out = tmp_path / "gguf"
    result = run_export(ExportRequest(str(smol_export_run), "gguf", "q8_0", output=str(out)))
    file = Path(result.main_file)
    assert file.suffix == ".gguf" and file.parent == out and 100e6 < file.stat().st_size < 180e6
    reader = GGUFReader(file)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert tokens[reader.fields["tokenizer.ggml.eos_token_id"].contents()] == IM_END
    assert "<|im_start|>" in reader.fields["tokenizer.chat_template"].contents()
    modelfile = (out / "Modelfile").read_text()
    assert f"FROM ./{file.name}" in modelfile and parse_stops(modelfile) == [IM_END]
    assert "TEMPLATE" in modelfile and "<|im_start|>" in modelfile
    # the verification reloaded the file and answered: the same words, stopped at the end of turn
    assert result.answers["export"] == result.answers["tuned model"] == "The capital of France is Paris."
    assert any("own greedy answer stopped at the end-of-turn token" in c for c in result.checks)
    assert any("ends the tuned model's answer with the end-of-turn token" in c for c in result.checks)


@pytest.mark.parametrize("quant", ["f16", "bf16"])
def test_gguf_16_bit_from_a_hugging_face_base(tiny_export_run, tmp_path, quant):
    """A base that did not come from a GGUF file: the vocabulary is written from the HF tokenizer."""
    from tuitune.export.gguf_verify import read_meta

    out = tmp_path / quant
    result = run_export(ExportRequest(str(tiny_export_run), "gguf", quant, output=str(out)), reloader="transformers")
    meta = read_meta(Path(result.main_file))
    assert meta.eos_token == IM_END and "<|im_start|>" in (meta.chat_template or "")
    assert any(f"for {quant})" in c for c in result.checks)  # logits within the dtype's tolerance


def test_merged_qlora_run_is_dequantized_before_the_merge(tiny_qlora_run, tmp_path):
    out = tmp_path / "merged"
    result = run_export(ExportRequest(str(tiny_qlora_run), "merged", "f16", output=str(out)))
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float16"
    assert any("float16" in c and c.startswith("logits") for c in result.checks)


def test_gptq_without_a_gpu_says_so_before_doing_anything(smol_export_run, tmp_path):
    out = tmp_path / "gptq"
    with pytest.raises(TuituneError, match="GPTQ export needs a CUDA GPU"):
        run_export(ExportRequest(str(smol_export_run), "gptq", output=str(out)))
    assert not out.exists() and not out.parent.joinpath(".gptq.tmp").exists()


def test_a_k_quant_without_llamacpp_names_the_extra(smol_export_run, tmp_path, monkeypatch):
    import tuitune.chat.llamacpp_engine as llamacpp_engine

    monkeypatch.setattr(llamacpp_engine, "llamacpp_available", lambda: False)
    with pytest.raises(TuituneError, match=r"needs llama.cpp's quantizer.*tuitune\[llamacpp\].*q8_0"):
        run_export(ExportRequest(str(smol_export_run), "gguf", "q4_k_m", output=str(tmp_path / "k")))
    assert not (tmp_path / "k").exists()


def test_cli_export_reports_path_size_and_checks(smol_export_run, tmp_path, capsys):
    from tuitune.cli.main import main

    out = tmp_path / "cli-adapter"
    assert main(["export", str(smol_export_run), "--format", "adapter", "--output", str(out)]) == 0
    report = capsys.readouterr().out
    assert "adapter export verified" in report and f"path: {out}" in report and "size: " in report
    assert "tuned model: The capital of France is Paris." in report
    assert main(["export", str(smol_export_run), "--format", "adapter", "--quant", "q8_0"]) == 2
    assert "--quant does not apply to the adapter format" in capsys.readouterr().err
