"""Presets: named sets of config values applied at once; fields a preset leaves out keep their values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuitune.config import Config


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    values: dict[str, Any]  # dotted field name -> value

    def apply(self, config: Config) -> None:
        """Write the preset's values into `config` in place."""
        for dotted, value in self.values.items():
            section, name = dotted.split(".")
            setattr(getattr(config, section), name, value)


# What every preset sets for the preference objectives (training.objective itself follows the data and the
# user: a preset never changes it). DPO's beta 0.1 and ORPO's lambda 0.1 are the papers' values.
METHOD_DEFAULTS = {
    "training.dpo_beta": 0.1,
    "training.dpo_loss": "sigmoid",
    "training.orpo_lambda": 0.1,
}

QUICK_TEST = Preset("quick", "Quick test", {
    "model.max_seq_length": 512,
    "data.max_rows": 200,
    "data.eval_fraction": 0.0,
    "lora.r": 8,
    "lora.alpha": 8,
    "training.max_steps": 20,
    "training.batch_size": 1,
    "training.gradient_accumulation_steps": 1,
    "training.learning_rate": 2e-4,
    "training.warmup_steps": 2,
    "training.logging_steps": 1,
    "training.save_steps": 0,
    "training.eval_steps": 0,
    "training.early_stopping_patience": 0,
    **METHOD_DEFAULTS,
})
BALANCED = Preset("balanced", "Balanced", {
    "model.max_seq_length": 2048,
    "data.max_rows": 0,
    "data.eval_fraction": 0.0,
    "lora.r": 16,
    "lora.alpha": 16,
    "training.max_steps": 0,
    "training.num_epochs": 1.0,
    "training.batch_size": 2,
    "training.gradient_accumulation_steps": 4,
    "training.learning_rate": 2e-4,
    "training.lr_scheduler": "cosine",
    "training.warmup_steps": 5,
    "training.eval_steps": 0,
    "training.early_stopping_patience": 0,
    "training.gradient_checkpointing": "auto",
    **METHOD_DEFAULTS,
})
QUALITY = Preset("quality", "Quality", {
    "model.max_seq_length": 4096,
    "data.max_rows": 0,
    "data.eval_fraction": 0.05,
    "lora.r": 64,
    "lora.alpha": 64,
    "training.max_steps": 0,
    "training.num_epochs": 3.0,
    "training.batch_size": 4,
    "training.gradient_accumulation_steps": 4,
    "training.learning_rate": 1e-4,
    "training.lr_scheduler": "cosine",
    "training.warmup_steps": 20,
    # the 5% held out is measured every 50 steps; three without a lower eval loss stop the run, and the
    # best checkpoint's adapter is the one saved
    "training.eval_steps": 50,
    "training.early_stopping_patience": 3,
    "training.gradient_checkpointing": "auto",
    **METHOD_DEFAULTS,
})
PRESETS: dict[str, Preset] = {preset.key: preset for preset in (QUICK_TEST, BALANCED, QUALITY)}
