"""`tuitune eval`: base vs tuned on a held-out file, saved in the run; harness tasks from a local YAML offline."""

from __future__ import annotations

import json

import pytest

from tuitune.cli.main import main
from tuitune.config import Config, apply_overrides
from tuitune.errors import TuituneError
from tuitune.evaluation.results import load_latest, summary_text
from tuitune.runs import RunDir

pytestmark = pytest.mark.timeout(300)

QA = [("What is the capital of France?", "Paris."), ("How many legs does a spider have?", "Eight."),
      ("What do bees make?", "Honey.")]


@pytest.fixture()
def tuned_run(tiny_model_dir, tmp_path):
    """A run whose adapter is random (not zero): tuned differs from base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config = apply_overrides(Config(), {"model.name": str(tiny_model_dir)})
    run = RunDir.create(tmp_path / "runs", "evaluated")
    run.write_config(config)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)),
                           LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                      init_lora_weights=False))
    model.save_pretrained(str(run.adapter_dir))
    return run


def write_qa(path):
    path.write_text("".join(json.dumps({"instruction": q, "output": a}) + "\n" for q, a in QA))
    return path


def test_eval_compares_base_and_tuned_and_saves_in_the_run(tuned_run, tmp_path, capsys):
    data = write_qa(tmp_path / "held_out.jsonl")
    assert main(["eval", str(tuned_run.path), "--data", str(data), "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "perplexity" in out and "base" in out and "tuned" in out and "saved:" in out
    results = load_latest(tuned_run.path)
    ppl = results["metrics"]["perplexity"]
    assert ppl["base"] > 1 and ppl["tuned"] > 1 and ppl["base"] != ppl["tuned"]
    assert results["metrics"]["exact_match"]["base"] == 0.0 and results["rows"] == 3
    assert list((tuned_run.path / "eval").glob("results-*.json"))
    assert "perplexity" in summary_text(results) and "→" in summary_text(results)


def test_eval_needs_something_to_measure(tuned_run):
    from tuitune.evaluation.runner import evaluate

    with pytest.raises(TuituneError, match="--data FILE"):
        evaluate(str(tuned_run.path))


def test_hub_tasks_fail_at_once_offline(monkeypatch):
    pytest.importorskip("lm_eval")
    from tuitune.evaluation.harness import resolve_tasks

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TuituneError, match="local task YAML"):
        resolve_tasks(["hellaswag"])


def test_a_local_task_yaml_runs_offline(tiny_model_dir, tmp_path, monkeypatch, capsys):
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    mc = tmp_path / "mc.jsonl"
    mc.write_text("".join(json.dumps({"question": q, "choices": [a, "banana"], "answer": 0}) + "\n" for q, a in QA))
    task = tmp_path / "pirate_mc.yaml"
    task.write_text(f"task: tuitune_test_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {mc}\n"
                    "test_split: test\noutput_type: multiple_choice\ndoc_to_text: \"{{question}}\"\n"
                    "doc_to_choice: \"{{choices}}\"\ndoc_to_target: \"{{answer}}\"\nmetric_list:\n  - metric: acc\n")
    out_json = tmp_path / "r.json"
    assert main(["eval", str(tiny_model_dir), "--tasks", str(task), "--json", str(out_json)]) == 0
    metrics = json.loads(out_json.read_text())["metrics"]
    assert 0.0 <= metrics["tuitune_test_mc/acc"]["base"] <= 1.0
