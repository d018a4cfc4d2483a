"""The catalog's shapes, and discovery of models on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuitune.catalog import (CATALOG, EMBEDDED_DEFAULT, ModelSpec, all_models, count_params, find_local_models,
                             get_model, read_gguf_header, spec_from_gguf)

# Parameter counts published on each model card (billions).
PUBLISHED_B = {
    "llama-3.2-1b": 1.24, "llama-3.2-3b": 3.21, "llama-3.1-8b": 8.03, "llama-3.1-70b": 70.6,
    "mistral-7b": 7.25, "mixtral-8x7b": 46.7, "phi-3-mini": 3.82, "qwen2.5-0.5b": 0.49, "qwen2.5-7b": 7.61,
    "qwen2.5-72b": 72.7, "gemma-2-2b": 2.61, "gemma-2-9b": 9.24, "gemma-2-27b": 27.2, "yi-34b": 34.4,
    "smollm2-135m-instruct": 0.135,
}


@pytest.mark.parametrize("name,published", sorted(PUBLISHED_B.items()))
def test_parameter_counts_match_published_sizes(name, published):
    spec = get_model(name)
    assert spec is not None
    assert count_params(spec) / 1e9 == pytest.approx(published, rel=0.05)
    assert spec.params_b == pytest.approx(published, rel=0.05)


def test_catalog_covers_the_guides_families():
    names = {s.name for s in CATALOG}
    for required in ["llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "llama-3.1-70b", "llama-3-8b", "llama-3-70b",
                     "mistral-7b", "mixtral-8x7b", "phi-3-mini", "phi-3.5-mini", "qwen2.5-0.5b", "qwen2.5-1.5b",
                     "qwen2.5-3b", "qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b", "qwen2.5-72b", "qwen2-7b",
                     "gemma-2-2b", "gemma-2-9b", "gemma-2-27b", "yi-6b", "yi-34b", "deepseek-v2-lite"]:
        assert required in names
    assert len(names) == len(CATALOG), "catalog names must be unique"


def test_embedded_default_shape():
    spec = get_model(EMBEDDED_DEFAULT)
    assert spec.source == "embedded"
    assert (spec.hidden, spec.layers, spec.heads, spec.kv_heads, spec.intermediate, spec.vocab, spec.context) == (
        576, 30, 9, 3, 1536, 49152, 8192)
    assert spec.tied_embeddings and spec.architecture == "llama"


def test_shapes_are_consistent():
    for spec in CATALOG:
        assert spec.heads % spec.kv_heads == 0, spec.name
        assert spec.context >= 4096, spec.name
        if not spec.head_dim:
            assert spec.hidden % spec.heads == 0, spec.name


def test_get_model_by_hub_id_and_unknown():
    assert get_model("meta-llama/Llama-3.1-8B-Instruct").name == "llama-3.1-8b"
    assert get_model("no-such-model-xyz") is None


LLAMA_CONFIG = {"model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
                "num_key_value_heads": 8, "intermediate_size": 8192, "vocab_size": 128256,
                "max_position_embeddings": 131072, "tie_word_embeddings": True}


def _snapshot(hub: Path, repo: str, config: dict, rev: str = "abc123") -> Path:
    folder = hub / f"models--{repo.replace('/', '--')}" / "snapshots" / rev
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_finds_models_in_a_fake_hf_cache(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    folder = _snapshot(hub, "meta-llama/Llama-3.2-1B-Instruct", LLAMA_CONFIG)
    _snapshot(hub, "someone/broken", {"oops": True})
    (hub / "models--someone--nosnapshot").mkdir()
    (hub / "datasets--x--y").mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    found = {s.name: s for s in find_local_models()}
    spec = found["meta-llama/Llama-3.2-1B-Instruct"]
    assert spec.source == "local" and spec.path == str(folder)
    assert spec.params_b == pytest.approx(1.24, rel=0.02)
    assert (spec.hidden, spec.kv_heads, spec.context, spec.tied_embeddings) == (2048, 8, 131072, True)
    # A config without shapes is listed with unknown (0) fields rather than hiding or crashing.
    broken = found["someone/broken"]
    assert broken.params_b == 0 and broken.hidden == 0
    assert "someone/nosnapshot" not in found


def test_hf_home_and_converted_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    _snapshot(tmp_path / "hfhome" / "hub", "Qwen/Qwen2.5-0.5B-Instruct",
              {"model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
               "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936,
               "max_position_embeddings": 32768, "tie_word_embeddings": True})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    converted = tmp_path / "xdg" / "tuitune" / "models" / "my-model"
    converted.mkdir(parents=True)
    (converted / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    names = [s.name for s in find_local_models()]
    assert "Qwen/Qwen2.5-0.5B-Instruct" in names and "my-model" in names
    assert get_model("my-model").path == str(converted)


def test_user_folder_one_level_deep_and_multimodal_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "models"
    (root / "a").mkdir(parents=True)
    (root / "a" / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    (root / "vlm").mkdir()
    (root / "vlm" / "config.json").write_text(json.dumps({"model_type": "llava", "text_config": LLAMA_CONFIG}))
    (root / "a" / "deeper").mkdir()
    (root / "a" / "deeper" / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    assert get_model(str(root / "a")).hidden == 2048  # a folder by path, even outside any cache
    specs = {s.name: s for s in find_local_models([root])}
    assert set(specs) == {"a", "vlm"}
    assert specs["vlm"].hidden == 2048
    # all_models = catalog first, then local
    models = all_models([root / "a"])
    assert models[: len(CATALOG)] == CATALOG
    assert [m.name for m in models[len(CATALOG):]] == ["a", "deeper"]


def _write_gguf(path: Path, *, tied: bool) -> None:
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(176)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_context_length(1024)
    writer.add_vocab_size(100)
    writer.add_token_list([f"t{i}" for i in range(100)])
    writer.add_tensor("token_embd.weight", np.zeros((100, 64), dtype=np.float16))
    if not tied:
        writer.add_tensor("output.weight", np.zeros((100, 64), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_header_is_read_without_loading_tensors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    _write_gguf(tmp_path / "tied.gguf", tied=True)
    _write_gguf(tmp_path / "untied.gguf", tied=False)
    meta, tensors = read_gguf_header(tmp_path / "tied.gguf")
    assert meta["llama.block_count"] == 2 and tensors == {"token_embd.weight": 6400}
    tied = spec_from_gguf(tmp_path / "tied.gguf")
    assert (tied.hidden, tied.layers, tied.heads, tied.kv_heads, tied.intermediate, tied.vocab, tied.context) == (
        64, 2, 4, 2, 176, 100, 1024)
    assert tied.tied_embeddings and not spec_from_gguf(tmp_path / "untied.gguf").tied_embeddings
    assert get_model(str(tmp_path / "untied.gguf")).layers == 2
    names = {s.name for s in find_local_models([tmp_path])}
    assert names == {"tied.gguf", "untied.gguf"}
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf at all")
    assert spec_from_gguf(tmp_path / "junk.gguf") is None
    assert {s.name for s in find_local_models([tmp_path / "junk.gguf"])} == set()


def test_modelspec_is_frozen_and_labels():
    spec = get_model("llama-3.1-8b")
    with pytest.raises(Exception):
        spec.hidden = 1  # type: ignore[misc]
    assert spec.params_label == "8.0B"
    assert get_model(EMBEDDED_DEFAULT).params_label == "135M"
    assert ModelSpec("x", "f", "", 0.0, 0, 0, 0, 0, 0, 0, 0, False, "llama").params_label == "?"
