"""Generate answers from a base model, a trained adapter or a run (torch side; never imported by the UI
at import time)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tuitune.errors import TuituneError


@dataclass
class ChatTarget:
    base: str               # model source (catalog name, folder, gguf, hub id)
    adapter: Path | None    # a PEFT adapter folder, or None for the base alone
    label: str


def resolve_target(ref: str, runs_root=None) -> ChatTarget:
    """A run (name or folder), an adapter folder, or a model."""
    from tuitune.config import load_config
    from tuitune.runs import ADAPTER, RunDir

    path = Path(ref).expanduser()
    if (path / "adapter_config.json").exists():
        return ChatTarget(_adapter_base(path), path, f"adapter {path}")
    try:
        run = RunDir.open(ref, runs_root)
    except TuituneError:
        run = None
    if run is not None:
        adapter = run.path / ADAPTER
        if not (adapter / "adapter_config.json").exists():
            checkpoints = run.checkpoints()
            if not checkpoints:
                raise TuituneError(f"Run {run.name} has no adapter yet (it saves one when it finishes or "
                                   "at a checkpoint). Wait for a checkpoint or pick a finished run.")
            adapter = checkpoints[-1]
        return ChatTarget(load_config(run.config_path).model.name, adapter, f"run {run.name}")
    return ChatTarget(ref, None, f"model {ref}")


def _adapter_base(adapter: Path) -> str:
    config = adapter / "tuitune.toml"
    if config.exists():
        from tuitune.config import load_config

        return load_config(config).model.name
    import json

    data = json.loads((adapter / "adapter_config.json").read_text())
    base = data.get("base_model_name_or_path")
    if not base:
        raise TuituneError(f"{adapter} does not say which base model it belongs to.")
    return base


class Chatter:
    """Holds a model (with or without its adapter) and answers prompts greedily."""

    def __init__(self, target: ChatTarget):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _quiet_libraries()

        from tuitune.trainer.model_loading import local_folder, resolve_model_source

        folder = local_folder(resolve_model_source(target.base))
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        tokenizer_dir = target.adapter if target.adapter and (target.adapter / "tokenizer_config.json").exists() else folder
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).to(self.device)
        self.has_adapter = target.adapter is not None
        if self.has_adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(target.adapter))
        self.model = model.eval()

    def answer(self, prompt: str, *, max_new_tokens: int = 96, use_adapter: bool = True) -> str:
        import contextlib

        import torch

        messages = [{"role": "user", "content": prompt}]
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = f"### Instruction:\n{prompt}\n\n### Response:\n"
        inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(self.device)
        off = self.model.disable_adapter() if (self.has_adapter and not use_adapter) else contextlib.nullcontext()
        with torch.no_grad(), off:
            output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                         pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        return self.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def _quiet_libraries() -> None:
    """Answers go to the terminal: keep library progress bars and notices out of them."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
