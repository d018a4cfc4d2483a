"""Finished runs with a LoRA adapter, built without training (random B), for the chat and export tests."""

from __future__ import annotations

import time
from pathlib import Path

FINAL_LOSS = 0.4321


def make_adapter_run(root: Path, model_dir: Path, *, model_name: str, name: str = "adapter-run",
                     scale: float = 0.02, rank: int = 8, method: str = "lora", seed: int = 0) -> Path:
    """`<root>/<stamp>-<name>/` with config.toml, events.jsonl (started..finished) and adapter/.

    `model_dir` is the base as a Hugging Face folder; `model_name` is what the config names (the
    embedded default's catalog name, or the folder itself). B ~ N(0, scale) makes the adapter change
    the answers a little without breaking them.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuitune import events as ev
    from tuitune.config import Config, to_toml
    from tuitune.runs import RunDir

    config = Config()
    config.model.name = model_name
    config.model.method = method
    config.output.name = name
    run = RunDir.create(root, name)
    run.write_config(config)
    now = time.time()
    run.append_event({"type": ev.STARTED, "ts": now, "model": model_name, "method": method, "max_steps": 3,
                      "config": config.to_dict()})
    for step, loss in enumerate((1.5, 0.9, FINAL_LOSS), start=1):
        run.append_event({"type": ev.STEP, "ts": now + step, "step": step, "max_steps": 3, "loss": loss})
    run.append_event({"type": ev.FINISHED, "ts": now + 4, "summary": {"final_loss": FINAL_LOSS, "steps": 3}})

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    torch.manual_seed(seed)
    lora = LoraConfig(r=rank, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, lora)
    generator = torch.Generator().manual_seed(seed + 1)
    for param_name, param in model.named_parameters():
        if "lora_B" in param_name:
            param.data = torch.randn(param.shape, generator=generator) * scale
    model.save_pretrained(str(run.adapter_dir))
    tokenizer.save_pretrained(str(run.adapter_dir))
    (run.adapter_dir / "tuitune.toml").write_text(to_toml(config, commented=True), encoding="utf-8")
    return run.path
