"""Small rows of every format and writers for fixture files (shared by the data tests)."""

from __future__ import annotations

import json
from pathlib import Path


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


ALPACA_ROWS = [
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
]
SHAREGPT_ROWS = [
    {"conversations": [{"from": "human", "value": "Hi there"}, {"from": "gpt", "value": "Hello!"}]},
    {"conversations": [{"from": "system", "value": "Be terse."}, {"from": "human", "value": "2+2?"},
                       {"from": "gpt", "value": "4"}]},
]
MESSAGES_ROWS = [
    {"messages": [{"role": "user", "content": "Capital of France?"},
                  {"role": "assistant", "content": "Paris."}]},
    {"messages": [{"role": "system", "content": "You count."}, {"role": "user", "content": "1?"},
                  {"role": "assistant", "content": "2"}]},
]
TEXT_ROWS = [{"text": "The sea is wide and deep."}, {"text": "Ships sail on it."}]
PREFERENCE_ROWS = [
    {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."},
    {"prompt": "Count to two.", "chosen": "1, 2", "rejected": "3"},
]
ROWS_BY_FORMAT = {"alpaca": ALPACA_ROWS, "sharegpt": SHAREGPT_ROWS, "messages": MESSAGES_ROWS,
                  "text": TEXT_ROWS, "preference": PREFERENCE_ROWS}
