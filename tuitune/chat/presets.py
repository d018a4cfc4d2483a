"""Generation settings as named data: the factual, balanced and creative presets, greedy, and their checks.

Pure Python: the Chat screen edits these fields and the CLI reads them from flags; the engines turn
them into sampling arguments. A temperature of 0 means greedy decoding (sampling fields ignored).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from tuitune.errors import TuituneError


def _f(default, help: str, lo: float, hi: float):
    return field(default=default, metadata={"help": help, "min": lo, "max": hi})


@dataclass
class GenerationSettings:
    temperature: float = _f(0.7, "Randomness; 0 picks the most likely token every time (greedy)", 0.0, 2.0)
    top_p: float = _f(0.9, "Sample from the smallest set of tokens whose probability reaches top_p", 0.01, 1.0)
    top_k: int = _f(50, "Sample from the k most likely tokens (0: no limit)", 0, 1000)
    repetition_penalty: float = _f(1.1, "Above 1 discourages repeating tokens already in the text", 1.0, 2.0)
    max_new_tokens: int = _f(256, "Longest answer in tokens (generation also stops at the end-of-turn token)",
                             1, 8192)
    seed: int | None = None  # fixed sampling seed (tests, reproducible demos); None: fresh randomness

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def replace(self, **changes) -> "GenerationSettings":
        """A copy with `changes` applied and checked (raises TuituneError naming each bad field)."""
        merged = dataclasses.replace(self, **changes)
        merged.check()
        return merged

    def check(self) -> None:
        problems = []
        for f in dataclasses.fields(self):
            if "min" not in f.metadata:
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"{f.name} must be a number, got {value!r}")
            elif not f.metadata["min"] <= value <= f.metadata["max"]:
                problems.append(f"{f.name} = {value} is outside {f.metadata['min']}..{f.metadata['max']} "
                                f"({f.metadata['help'].lower()})")
            elif f.type in ("int", int) and int(value) != value:
                problems.append(f"{f.name} must be a whole number, got {value}")
        if problems:
            raise TuituneError("Bad generation setting: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Named presets. Factual keeps to the likeliest tokens (answers, extraction, code); balanced is a
# general chat setting; creative widens the choice for stories and brainstorming. Greedy is the
# deterministic one used by `--prompt`, by export verification and by tests.
PRESETS: dict[str, GenerationSettings] = {
    "factual": GenerationSettings(temperature=0.2, top_p=0.85, top_k=20, repetition_penalty=1.1),
    "balanced": GenerationSettings(temperature=0.7, top_p=0.9, top_k=50, repetition_penalty=1.1),
    "creative": GenerationSettings(temperature=1.0, top_p=0.95, top_k=100, repetition_penalty=1.05),
    "greedy": GenerationSettings(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0),
}
DEFAULT_PRESET = "balanced"
EDITABLE_FIELDS = ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens")


def preset(name: str, **changes) -> GenerationSettings:
    """A fresh copy of a named preset, optionally edited (`preset("factual", max_new_tokens=64)`)."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise TuituneError(f"Unknown generation preset {name!r}. Presets: {', '.join(PRESETS)}.")
    return PRESETS[key].replace(**changes)


def parse_setting(name: str, text: str) -> tuple[str, float | int]:
    """`("temp", "0.3")` -> ("temperature", 0.3), for `/set` commands and form fields."""
    aliases = {"temp": "temperature", "p": "top_p", "k": "top_k", "rep": "repetition_penalty",
               "max": "max_new_tokens", "max_tokens": "max_new_tokens"}
    key = aliases.get(name.strip().lower(), name.strip().lower())
    if key not in EDITABLE_FIELDS:
        raise TuituneError(f"Unknown setting {name!r}. Settings: {', '.join(EDITABLE_FIELDS)}.")
    try:
        value: float | int = int(text) if key in ("top_k", "max_new_tokens") else float(text)
    except ValueError:
        kind = "a whole number" if key in ("top_k", "max_new_tokens") else "a number"
        raise TuituneError(f"{key} must be {kind}, got {text!r}.") from None
    return key, value
