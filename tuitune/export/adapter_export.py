"""The adapter format: LoRA weights (safetensors), adapter config, tokenizer with its chat template,
the run config and a model card; verified by loading the written adapter next to the trained one.
"""

from __future__ import annotations

import json
import shutil

from tuitune.export.context import ExportContext, Written
from tuitune.export.model_card import hub_base_id, model_card
from tuitune.export.verify import (check_eos_follows, check_template_and_eos, compare_logits, describe_stop,
                                  greedy_answer, logits_of)

USAGE = """```python
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer

model = AutoPeftModelForCausalLM.from_pretrained("{path}")
tokenizer = AutoTokenizer.from_pretrained("{path}")
```
Or in the terminal: `tuitune chat {path}`."""


def export(ctx: ExportContext) -> Written:
    tuned, out = ctx.tuned, ctx.out
    ctx.progress(0.3, "saving the adapter weights")
    tuned.model.save_pretrained(str(out), safe_serialization=True)
    config_path = out / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = hub_base_id(tuned.target.base)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tuned.tokenizer.save_pretrained(str(out))
    run_config = tuned.target.adapter / "tuitune.toml"
    if run_config.exists():
        shutil.copyfile(run_config, out / "tuitune.toml")
    (out / "README.md").write_text(model_card(base=tuned.target.base, fmt="adapter", quant=None,
                                              run_path=tuned.target.run, usage=USAGE.format(path=out.name)),
                                   encoding="utf-8")
    ctx.progress(0.6, "verifying: loading the written adapter beside the trained one")
    return Written(out, *_verify(ctx))


def _verify(ctx: ExportContext) -> tuple[list[str], str]:
    from transformers import AutoTokenizer

    model, probe = ctx.tuned.model, ctx.probe
    model.load_adapter(str(ctx.out), adapter_name="exported")
    try:
        model.set_adapter("exported")
        logits = logits_of(model, probe.sequence)
        answer, reason = greedy_answer(model, ctx.tuned.tokenizer, probe.input_ids, probe.stop_ids)
    finally:
        model.set_adapter("default")
        model.delete_adapter("exported")
    tokenizer = AutoTokenizer.from_pretrained(str(ctx.out))
    checks = [compare_logits(probe.logits, logits, "float32").replace("logits", "logits (written adapter)", 1),
              check_template_and_eos(probe, template=tokenizer.chat_template, eos_token=tokenizer.eos_token,
                                     where="the exported tokenizer"),
              check_eos_follows(probe, logits, "the written adapter"), describe_stop(reason, "the written adapter")]
    return checks, answer
