"""The dataset formats tuitune reads and how each one is recognised from its columns and first rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

ALPACA = "alpaca"
SHAREGPT = "sharegpt"
MESSAGES = "messages"
TEXT = "text"
PREFERENCE = "preference"


@dataclass(frozen=True)
class FormatSpec:
    name: str
    title: str
    needs: str          # what a row must hold, for messages that explain a failed detection
    trainable: bool     # False: recognised and inspected, but no objective trains on it


FORMATS: dict[str, FormatSpec] = {
    ALPACA: FormatSpec(ALPACA, "Alpaca", "columns `instruction` and `output` (`input` optional; "
                       "`response` is accepted for `output`, `prompt`/`completion` as a pair)", True),
    SHAREGPT: FormatSpec(SHAREGPT, "ShareGPT", "a `conversations` column holding lists of "
                         "{\"from\": human|gpt|system, \"value\": ...}", True),
    MESSAGES: FormatSpec(MESSAGES, "OpenAI messages", "a `messages` column holding lists of "
                         "{\"role\": system|user|assistant, \"content\": ...}", True),
    TEXT: FormatSpec(TEXT, "plain text", "a `text` column of strings (continued pretraining)", True),
    PREFERENCE: FormatSpec(PREFERENCE, "preference pairs", "columns `chosen` and `rejected` "
                           "(`prompt` optional; trains with DPO or ORPO)", True),
}

# Other names users type for --format.
FORMAT_ALIASES = {
    "openai": MESSAGES, "chatml": MESSAGES, "conversation": MESSAGES, "chat": MESSAGES,
    "share_gpt": SHAREGPT, "vicuna": SHAREGPT,
    "instruction": ALPACA, "completion": ALPACA,
    "plain": TEXT, "pretraining": TEXT, "cpt": TEXT, "raw": TEXT,
    "dpo": PREFERENCE, "pairs": PREFERENCE, "preferences": PREFERENCE,
}

# Roles, canonical names first. Matching is case-insensitive.
ROLE_ALIASES = {
    "system": "system", "sys": "system", "developer": "system",
    "user": "user", "human": "user", "prompter": "user", "question": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
    "chatgpt": "assistant", "ai": "assistant", "answer": "assistant",
}

CONVERSATION_COLUMNS = ("messages", "conversations", "conversation", "chat", "dialogue")
ALPACA_OUTPUT_COLUMNS = ("output", "response")


def canonical_role(value: Any) -> str | None:
    """'system', 'user' or 'assistant' for a role or one of its aliases; None when unknown."""
    if not isinstance(value, str):
        return None
    return ROLE_ALIASES.get(value.strip().lower())


def resolve_format_name(name: str | None) -> str | None:
    """The canonical format name for a user's `--format` (None or 'auto' mean detect)."""
    if name is None:
        return None
    key = name.strip().lower().replace("-", "_")
    if key in ("", "auto"):
        return None
    if key in FORMATS:
        return key
    if key in FORMAT_ALIASES:
        return FORMAT_ALIASES[key]
    from tuitune.errors import TuituneError

    raise TuituneError(f"Unknown dataset format '{name}'. Use one of: auto, {', '.join(FORMATS)}.")


def as_list(value: Any) -> Any:
    """A list stored as a JSON string (as CSV cells hold them) turned back into a list."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            return value
        return parsed
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()  # numpy arrays from Parquet/pandas
    return value


def _turn_keys(value: Any) -> set[str] | None:
    """The keys of the first dict of a list of turns, or None when the value is not such a list."""
    value = as_list(value)
    if not isinstance(value, (list, tuple)) or not value:
        return None
    first = value[0]
    return set(first) if isinstance(first, dict) else None


def _present(rows: list[dict], column: str) -> bool:
    return any(row.get(column) is not None for row in rows)


def detect_format(columns: Iterable[str], sample_rows: list[dict]) -> tuple[str | None, str]:
    """Guess the format from the column names and the first rows.

    Returns (format, reason) where reason says which columns decided it, or (None, reason)
    where reason lists the columns seen and what each format needs.
    """
    cols = list(dict.fromkeys(columns))
    colset = set(cols)
    rows = [r for r in sample_rows if isinstance(r, dict)]

    if "chosen" in colset and "rejected" in colset:
        extra = "`prompt`, " if "prompt" in colset else ""
        return PREFERENCE, f"columns {extra}`chosen` and `rejected` (preference pairs)"

    for column in CONVERSATION_COLUMNS:
        if column not in colset:
            continue
        keys = next((k for k in (_turn_keys(r.get(column)) for r in rows) if k), None)
        if keys is None:
            continue
        if {"role", "content"} <= keys:
            return MESSAGES, f"column `{column}` holds turns with `role` and `content`"
        if {"from", "value"} <= keys:
            return SHAREGPT, f"column `{column}` holds turns with `from` and `value`"

    if "instruction" in colset:
        for out in ALPACA_OUTPUT_COLUMNS:
            if out in colset:
                extra = " and `input`" if "input" in colset else ""
                return ALPACA, f"columns `instruction`, `{out}`{extra}"
    if "prompt" in colset and "completion" in colset:
        return ALPACA, "columns `prompt` and `completion` (read as instruction and output)"

    if "text" in colset and (not rows or any(isinstance(r.get("text"), str) for r in rows)):
        return TEXT, "column `text` of strings"

    seen = ", ".join(f"`{c}`" for c in cols[:20]) or "none"
    if len(cols) > 20:
        seen += f" (and {len(cols) - 20} more)"
    hints = []
    for column in CONVERSATION_COLUMNS:
        if column in colset:
            keys = next((k for k in (_turn_keys(r.get(column)) for r in rows) if k), None)
            if keys is None:
                hints.append(f"column `{column}` does not hold a list of turns")
            else:
                hints.append(f"the turns in `{column}` have keys {sorted(keys)}, not role/content "
                             "or from/value")
    if "instruction" in colset:
        hints.append("`instruction` is there but `output` is missing")
    if "text" in colset and rows and not _present(rows, "text"):
        hints.append("`text` is empty in the first rows")
    needs = "; ".join(f"{spec.title} needs {spec.needs}" for spec in FORMATS.values())
    why = (" " + "; ".join(hints) + ".") if hints else ""
    return None, f"Columns seen: {seen}.{why} {needs}."
