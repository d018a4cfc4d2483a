"""The tuned model an export starts from: the base (4-bit for QLoRA runs) with the run's adapter, and
the merge into a plain model (a QLoRA base is dequantized first, then the LoRA weights are added).

Torch side: imported by the export runner in its own process, never by the UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tuitune.chat.targets import ChatTarget
from tuitune.errors import TuituneError


@dataclass
class Tuned:
    target: ChatTarget
    tokenizer: object
    model: object          # a PeftModel until merged; then the merged transformers model
    base_folder: Path
    device: str
    quantized_base: bool   # the base was loaded in NF4, as a QLoRA run trained it
    stop_ids: list[int]


def load_tuned(target: ChatTarget, device: str | None = None) -> Tuned:
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from tuitune.chat.hf_engine import quiet_libraries
    from tuitune.chat.prompting import stop_token_ids
    from tuitune.model_source import local_folder, resolve_model_source

    if target.adapter is None:
        raise TuituneError(f"{target.label} has no adapter to export. Pass a run (name or folder) or an adapter "
                           "folder; `tuitune runs` lists the runs.")
    quiet_libraries()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    folder = local_folder(resolve_model_source(target.base))
    tokenizer_dir = target.adapter if (target.adapter / "tokenizer_config.json").exists() else folder
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    quantized = target.method == "qlora"
    try:
        base = load_base(folder, device, quantized)
        model = PeftModel.from_pretrained(base, str(target.adapter))
    except (OSError, ValueError, KeyError) as exc:
        raise TuituneError(f"Cannot load {target.label} (base {target.base}, adapter {target.adapter}): {exc}") from None
    stop_ids = stop_token_ids(tokenizer, model.generation_config.eos_token_id)
    return Tuned(target, tokenizer, model.eval(), folder, device, quantized, stop_ids)


def load_base(folder: Path, device: str, quantized: bool):
    """The base model as the run trained it: NF4 (double quantization) for QLoRA, else the compute dtype."""
    import torch
    from transformers import AutoModelForCausalLM

    compute = torch.bfloat16 if device == "cuda" else torch.float32
    kwargs: dict = {"dtype": compute}
    if quantized:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute)
    if device == "cuda":
        kwargs["device_map"] = {"": 0}
    return AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)


def merge(tuned: Tuned):
    """Merge the adapter into the base and return the plain model (replaces `tuned.model`).

    A QLoRA base is dequantized to the compute dtype first, so the merged weights are what the
    adapter was trained against (NF4 values + LoRA), not a re-quantized sum.
    """
    from peft import PeftModel

    model = tuned.model
    if tuned.quantized_base:
        # A fresh NF4 load (quantization is deterministic: the same values the adapter trained on), not the
        # one in memory: on the CPU bitsandbytes repacks a 4-bit weight at its first forward, and
        # `dequantize()` of a repacked weight decodes garbage (logits off by ~100%, measured).
        tuned.model = model = None
        base = load_base(tuned.base_folder, tuned.device, quantized=True).dequantize()
        model = PeftModel.from_pretrained(base, str(tuned.target.adapter))
    merged = model.merge_and_unload()
    merged.eval()
    tuned.model = merged
    return merged


def dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")
