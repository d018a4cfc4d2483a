"""Which training objective a run uses: `training.objective`, with `auto` resolved from the data's format.

Pure Python (no torch): the trainer, the CLI and the form resolve it the same way. Preference pairs
train with DPO, plain text with continued pretraining, everything else with SFT; an explicit
objective must suit the data, and a mismatch is one clear error naming both.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuitune.config import Config
from tuitune.errors import TuituneError

SFT, DPO, ORPO, CPT = "sft", "dpo", "orpo", "cpt"
PREFERENCE_OBJECTIVES = (DPO, ORPO)
# The data format each objective needs (None: any conversation or instruction format).
AUTO_BY_FORMAT = {"preference": DPO, "text": CPT}


@dataclass(frozen=True)
class Objective:
    name: str      # sft | dpo | orpo | cpt
    reason: str    # why, for the log: "set in training.objective" or "auto: preference pairs"

    @property
    def is_preference(self) -> bool:
        return self.name in PREFERENCE_OBJECTIVES


def objective_for(config: Config, data_format: str, where: str = "the data") -> Objective:
    """The objective for data of `data_format`; TuituneError when an explicit one does not fit it."""
    wanted = config.training.objective
    if wanted == "auto":
        name = AUTO_BY_FORMAT.get(data_format, SFT)
        return Objective(name, f"auto: {where} is {data_format}")
    if wanted in PREFERENCE_OBJECTIVES and data_format != "preference":
        raise TuituneError(
            f"training.objective = \"{wanted}\" trains on preference pairs (columns prompt, chosen, rejected), "
            f"but {where} is {data_format}. Give a file of pairs, or set training.objective to auto or sft.")
    if wanted != SFT or data_format != "preference":
        if wanted == CPT and data_format != "text":
            raise TuituneError(
                f"training.objective = \"cpt\" (continued pretraining) trains on plain text (a `text` column), "
                f"but {where} is {data_format}. Give a text file, or set training.objective to auto or sft.")
        return Objective(wanted, "set in training.objective")
    raise TuituneError(
        f"{where} holds preference pairs (prompt/chosen/rejected), which SFT cannot train on. Set "
        "training.objective to dpo, orpo or auto (auto picks dpo for pairs).")


def detect_data_format(config: Config) -> tuple[str, str]:
    """(format, where) of the run's training data, read from a sample of its rows (the file is indexed,
    not loaded). TuituneError when the file is missing or its format cannot be told."""
    from tuitune.data import detect_format, load_rows, open_source, resolve_format_name, sample_dataset_path
    from tuitune.data.columns import map_record, mapped_columns, parse_mapping

    path = config.data.path or str(sample_dataset_path())
    forced = resolve_format_name(config.data.format)
    if forced is not None:
        return forced, path
    source = open_source(path, salvage=config.data.salvage)
    mapping = parse_mapping(config.data.columns)
    sample = source.sample(20)
    fmt, _reason = detect_format(mapped_columns(source.columns(), mapping), [map_record(r, mapping) for r in sample])
    if fmt is None:  # load_rows raises the full explanation (columns seen, suggested mapping)
        fmt = load_rows(source, columns=config.data.columns).format
    return fmt, path


def resolve_objective(config: Config) -> Objective:
    """The run's objective, detecting the data's format when `training.objective` is auto or must be checked."""
    fmt, where = detect_data_format(config)
    return objective_for(config, fmt, where)
