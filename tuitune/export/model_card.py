"""The README.md model card of an export: base model, data, training config, final loss, how to use it.

Pure Python; reads the run's config and events. Hub metadata goes in the YAML front matter.
"""

from __future__ import annotations

from pathlib import Path

from tuitune import __version__


def hub_base_id(base: str) -> str:
    """The base model as the Hub knows it: a catalog entry's hub id, else what the config says."""
    from tuitune.catalog import get_model

    spec = get_model(base)
    return spec.hf_id if spec is not None and spec.hf_id else base


def run_facts(run_path: Path | None) -> dict:
    """Data, config and final loss of the run (empty when the export comes from a bare adapter)."""
    if run_path is None:
        return {}
    from tuitune.runs import RunDir

    run = RunDir(run_path)
    info = run.info()
    facts = {"run": run.name, "final_loss": info.final_loss, "steps": info.step, "status": info.status}
    try:
        config = run.load_config()
    except Exception:  # a card without the config beats no export
        return facts
    facts.update(data=config.data.path or "tuitune's bundled sample (pirate_chat.jsonl)",
                 method=config.model.method, lora=f"r {config.lora.r}, alpha {config.lora.alpha}, dropout "
                 f"{config.lora.dropout}, targets {', '.join(config.lora.target_modules)}",
                 training=f"lr {config.training.learning_rate}, batch {config.training.batch_size} x "
                 f"{config.training.gradient_accumulation_steps}, max_steps {config.training.max_steps}, "
                 f"epochs {config.training.num_epochs}, seed {config.training.seed}",
                 max_seq_length=config.model.max_seq_length)
    return facts


def model_card(*, base: str, fmt: str, quant: str | None, run_path: Path | None, usage: str) -> str:
    base_id = hub_base_id(base)
    facts = run_facts(run_path)
    loss = facts.get("final_loss")
    tags = ["tuitune", "lora" if fmt == "adapter" else fmt] + (["peft"] if fmt == "adapter" else [])
    front = ["---", f"base_model: {base_id}", "library_name: " + ("peft" if fmt == "adapter" else "transformers"),
             "tags:"] + [f"- {tag}" for tag in tags] + ["---", ""]
    body = [f"# {facts.get('run', Path(base).name)} ({fmt}{f', {quant}' if quant else ''})", "",
            f"A LoRA fine-tune of [{base_id}](https://huggingface.co/{base_id}) made with tuitune {__version__}.", "",
            "| | |", "|---|---|", f"| base model | {base_id} |"]
    for key, label in (("data", "data"), ("method", "method"), ("lora", "LoRA"), ("training", "training"),
                       ("max_seq_length", "max sequence length"), ("steps", "steps")):
        if facts.get(key) not in (None, ""):
            body.append(f"| {label} | {facts[key]} |")
    body.append(f"| final training loss | {loss:.4f} |" if isinstance(loss, (int, float)) else
                "| final training loss | not recorded |")
    body += ["", "## Use it", "", usage.strip(), ""]
    return "\n".join(front + body)
