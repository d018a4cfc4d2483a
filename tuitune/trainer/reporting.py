"""`training.report_to`: TensorBoard or Weights & Biases logging when its package is installed, else none.

Returns the `TrainingArguments` fields (`report_to`, `run_name`); TensorBoard writes under the run's
`tensorboard/`. A missing package is a warning, never an error: the run trains exactly as with "none".
"""

from __future__ import annotations

import importlib.util
import os

from tuitune.runs import RunDir

PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}
TENSORBOARD_DIR = "tensorboard"


def report_targets(target: str, run: RunDir, warn=None) -> dict:
    """TrainingArguments fields for `target` (none | tensorboard | wandb)."""
    if target == "none":
        return {"report_to": "none"}
    module, package = PACKAGES[target]
    if importlib.util.find_spec(module) is None:
        if warn is not None:
            warn(f"training.report_to = \"{target}\" but {package} is not installed: logging to the run directory "
                 f"only. `pip install {package}` to enable it.")
        return {"report_to": "none"}
    fields = {"report_to": [target], "run_name": run.name}
    if target == "tensorboard":
        # transformers 5 reads the folder from the environment; the default (under .hf) is removed at the end.
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(run.path / TENSORBOARD_DIR)
    return fields
