"""The merged format: the adapter merged into the base (a QLoRA base dequantized first), saved as a
16-bit Hugging Face folder with tokenizer, chat template and EOS ids; verified by reloading it.
"""

from __future__ import annotations

import gc

from tuitune.export.context import ExportContext, Written
from tuitune.export.model_card import model_card
from tuitune.export.tuned import merge
from tuitune.export.verify import (check_eos_follows, check_template_and_eos, compare_logits, describe_stop,
                                  greedy_answer, logits_of)

DTYPES = {"bf16": "bfloat16", "f16": "float16"}
USAGE = """```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("{path}")
tokenizer = AutoTokenizer.from_pretrained("{path}")
```
vLLM: `vllm serve {path}`. In the terminal: `tuitune chat {path}`."""


def export(ctx: ExportContext) -> Written:
    import torch

    ctx.progress(0.2, "merging the adapter into the base" + (" (dequantized from NF4)" if ctx.tuned.quantized_base
                                                              else ""))
    merged = merge(ctx.tuned)
    merged.to(getattr(torch, DTYPES[ctx.quant]))
    merged.generation_config.eos_token_id = ctx.probe.stop_ids
    merged.generation_config.pad_token_id = ctx.tuned.tokenizer.pad_token_id
    ctx.progress(0.4, f"saving the {ctx.quant} weights")
    merged.save_pretrained(str(ctx.out), safe_serialization=True)
    ctx.tuned.tokenizer.save_pretrained(str(ctx.out))
    (ctx.out / "README.md").write_text(model_card(base=ctx.tuned.target.base, fmt="merged", quant=ctx.quant,
                                                  run_path=ctx.tuned.target.run, usage=USAGE.format(path=ctx.out.name)),
                                       encoding="utf-8")
    ctx.tuned.model = merged = None
    gc.collect()
    ctx.progress(0.6, "verifying: reloading the merged folder")
    return Written(ctx.out, *verify_folder(ctx, DTYPES[ctx.quant]))


def verify_folder(ctx: ExportContext, storage: str) -> tuple[list[str], str]:
    """Reload a saved Hugging Face folder (weights upcast to float32, so only storage rounding shows)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuitune.chat.prompting import stop_token_ids

    probe = ctx.probe
    model = AutoModelForCausalLM.from_pretrained(str(ctx.out), dtype=torch.float32).to(ctx.tuned.device).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(ctx.out))
    stops = stop_token_ids(tokenizer, model.generation_config.eos_token_id)
    logits = logits_of(model, probe.sequence)
    answer, reason = greedy_answer(model, tokenizer, probe.input_ids, stops)
    del model
    gc.collect()
    checks = [compare_logits(probe.logits, logits, storage, quantized_reference=ctx.tuned.quantized_base)
              .replace("logits", "logits (reloaded folder)", 1),
              check_template_and_eos(probe, template=tokenizer.chat_template, eos_token=tokenizer.eos_token,
                                     where="the exported tokenizer"),
              check_eos_follows(probe, logits, "the merged model"), describe_stop(reason, "the merged model")]
    return checks, answer
