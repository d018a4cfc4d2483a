"""What a chat/export reference resolves to: runs, adapters, GGUF files and models."""

from __future__ import annotations

import json

import pytest

from tuitune.chat import resolve_target
from tuitune.config import Config
from tuitune.errors import TuituneError
from tuitune.runs import RunDir


def make_run(root, name, *, method=None, adapter=True):
    run = RunDir.create(root, name)
    run.write_config(Config())
    if method:
        run.append_event({"type": "started", "ts": 1.0, "method": method})
    if adapter:
        run.adapter_dir.mkdir()
        (run.adapter_dir / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
    return run


def test_a_run_resolves_to_its_adapter_and_training_method(tmp_path):
    run = make_run(tmp_path, "pirate", method="qlora")
    target = resolve_target("pirate", tmp_path)
    assert (target.kind, target.adapter, target.run, target.method) == ("adapter", run.adapter_dir, run.path, "qlora")
    assert target.base == Config().model.name and target.label == f"run {run.name}"


def test_a_model_name_wins_over_a_run_whose_name_contains_it(tmp_path):
    make_run(tmp_path, "smollm2-135m-instruct-sample")
    assert resolve_target("smollm2-135m-instruct", tmp_path).kind == "model"
    assert resolve_target("instruct-sample", tmp_path).kind == "adapter"


def test_adapter_folder_gguf_file_and_gguf_folder(tmp_path):
    adapter = tmp_path / "a"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base"}))
    assert (resolve_target(str(adapter)).kind, resolve_target(str(adapter)).base) == ("adapter", "org/base")
    export = tmp_path / "export"
    export.mkdir()
    (export / "m-q8_0.gguf").write_bytes(b"GGUF")
    assert resolve_target(str(export)).gguf == (export / "m-q8_0.gguf").resolve()
    assert resolve_target(str(export / "m-q8_0.gguf")).kind == "gguf"
    (export / "m-f16.gguf").write_bytes(b"GGUF")
    with pytest.raises(TuituneError, match="holds 2 .gguf files"):
        resolve_target(str(export))


def test_a_run_without_adapter_or_checkpoint_is_explained(tmp_path):
    make_run(tmp_path, "early", adapter=False)
    with pytest.raises(TuituneError, match="has no adapter yet"):
        resolve_target("early", tmp_path)


def test_an_adapter_without_a_base_is_explained(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(TuituneError, match="base_model_name_or_path is empty"):
        resolve_target(str(tmp_path))
