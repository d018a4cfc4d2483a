"""The GPTQ format: 4-bit GPTQ weights through the optional `gptqmodel` package, on a CUDA GPU only.

`preflight()` runs before anything loads, so a machine without a GPU (or without gptqmodel) is told
at once. The merged 16-bit model is quantized with calibration rows from the run's own data, then
reloaded with gptqmodel and checked like every other format.
"""

from __future__ import annotations

import gc
import tempfile

from tuitune.errors import TuituneError
from tuitune.export.context import ExportContext, Written
from tuitune.export.model_card import model_card
from tuitune.export.tuned import merge
from tuitune.export.verify import check_eos_follows, check_template_and_eos, describe_stop, greedy_answer, logits_of

INSTALL_HINT = "pip install 'tuitune[gptq]'  (gptqmodel; needs a CUDA GPU and its toolkit)"
CALIBRATION_ROWS = 128
USAGE = """```python
from transformers import AutoModelForCausalLM  # with gptqmodel installed
model = AutoModelForCausalLM.from_pretrained("{path}", device_map="cuda")
```
vLLM: `vllm serve {path}`."""


def preflight() -> None:
    """Refuse at once, before any loading, where GPTQ cannot run."""
    import importlib.util

    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        raise TuituneError("GPTQ export needs a CUDA GPU (gptqmodel quantizes on the GPU), and this machine has "
                           "none. Nothing was exported. On the CPU, export gguf (q8_0, or q4_k_m with llama.cpp) "
                           "or merged instead, or run this export on a GPU machine.")
    if importlib.util.find_spec("gptqmodel") is None:
        raise TuituneError(f"GPTQ export needs the gptqmodel package, which is not installed. Install it with: "
                           f"{INSTALL_HINT}. Nothing was exported.")


def export(ctx: ExportContext) -> Written:
    import torch
    from gptqmodel import GPTQModel, QuantizeConfig

    preflight()
    ctx.progress(0.1, "merging the adapter into the base")
    merged = merge(ctx.tuned).to(torch.bfloat16)
    merged.generation_config.eos_token_id = ctx.probe.stop_ids
    with tempfile.TemporaryDirectory(prefix="tuitune-gptq-", dir=ctx.out.parent) as staging:
        merged.save_pretrained(staging, safe_serialization=True)
        ctx.tuned.tokenizer.save_pretrained(staging)
        ctx.tuned.model = merged = None
        gc.collect()
        torch.cuda.empty_cache()
        ctx.progress(0.3, f"GPTQ 4-bit quantization with {CALIBRATION_ROWS} calibration rows")
        model = GPTQModel.load(staging, QuantizeConfig(bits=4, group_size=128))
        model.quantize(calibration_rows(ctx), batch_size=1)
        model.save(str(ctx.out))
        del model
    ctx.tuned.tokenizer.save_pretrained(str(ctx.out))
    (ctx.out / "README.md").write_text(model_card(base=ctx.tuned.target.base, fmt="gptq", quant="4bit",
                                                  run_path=ctx.tuned.target.run, usage=USAGE.format(path=ctx.out.name)),
                                       encoding="utf-8")
    gc.collect()
    torch.cuda.empty_cache()
    ctx.progress(0.8, "verifying: reloading the GPTQ folder")
    return Written(ctx.out, *_verify(ctx))


def calibration_rows(ctx: ExportContext) -> list[dict]:
    """Tokenized rows of the data the run trained on (the bundled sample for a bare adapter)."""
    from tuitune.data import build_training_dataset, load_rows, sample_dataset_path

    path = str(sample_dataset_path())
    if ctx.tuned.target.run is not None:
        from tuitune.runs import RunDir

        path = RunDir(ctx.tuned.target.run).load_config().data.path or path
    rows = load_rows(path).rows[:CALIBRATION_ROWS]
    dataset = build_training_dataset(rows, ctx.tuned.tokenizer, max_seq_length=512, responses_only=False,
                                     packing=False)
    return [{"input_ids": r["input_ids"], "attention_mask": [1] * len(r["input_ids"])} for r in dataset]


def _verify(ctx: ExportContext) -> tuple[list[str], str]:
    from gptqmodel import GPTQModel
    from transformers import AutoTokenizer

    probe = ctx.probe
    model = GPTQModel.load(str(ctx.out))
    inner = getattr(model, "model", model)
    tokenizer = AutoTokenizer.from_pretrained(str(ctx.out))
    logits = logits_of(inner, probe.sequence)
    answer, reason = greedy_answer(inner, tokenizer, probe.input_ids, probe.stop_ids)
    checks = [check_template_and_eos(probe, template=tokenizer.chat_template, eos_token=tokenizer.eos_token,
                                     where="the exported tokenizer"),
              check_eos_follows(probe, logits, "the GPTQ model"), describe_stop(reason, "the GPTQ model")]
    return checks, answer

