"""Turning raw records of any format into canonical rows, noting every problem with its row number.

A canonical row is a conversation (a list of {"role": "system"|"user"|"assistant", "content": str}),
a plain text, or, for preference pairs, a prompt conversation with chosen and rejected replies.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from tuitune.data import problems as P
from tuitune.data.formats import (ALPACA, ALPACA_OUTPUT_COLUMNS, CONVERSATION_COLUMNS, MESSAGES,
                                  PREFERENCE, ROLE_ALIASES, SHAREGPT, TEXT, as_list,
                                  canonical_role)
from tuitune.data.problems import Problem


@dataclass
class Row:
    """One usable example. `number` is its 1-based row in the source."""

    number: int
    messages: list[dict] | None = None   # the conversation (for preference pairs: the prompt turns)
    text: str | None = None              # plain text rows
    chosen: list[dict] | None = None     # preference pairs only
    rejected: list[dict] | None = None   # preference pairs only
    # Alpaca rows keep (instruction, input) so the Alpaca prompt can show `### Input:` on its own.
    instruction: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        if self.text is not None:
            return "text"
        if self.chosen is not None:
            return "preference"
        return "conversation"

    def to_dict(self) -> dict:
        if self.text is not None:
            return {"text": self.text}
        if self.chosen is not None:
            return {"prompt": self.messages, "chosen": self.chosen, "rejected": self.rejected}
        return {"messages": self.messages}

    def content_key(self) -> bytes:
        """A digest of the content, equal for rows that would train identically. (Each string
        goes in with its length, so no two different rows can run together into one input.)"""
        digest = hashlib.blake2b(digest_size=16)

        def add(text: str) -> None:
            data = text.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)

        if self.text is not None:
            add("text")
            add(self.text)
        for label, turns in (("messages", self.messages), ("chosen", self.chosen),
                             ("rejected", self.rejected)):
            if turns is not None:
                add(label)
                add(str(len(turns)))
                for turn in turns:
                    add(turn["role"])
                    add(turn["content"])
        return digest.digest()


_KNOWN_ROLES = "system, user, assistant (aliases: " + ", ".join(
    sorted(r for r in ROLE_ALIASES if r not in ("system", "user", "assistant"))) + ")"


def _text_value(value: Any) -> str | None:
    """A string field as a string; numbers become their text; anything else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return str(value)
    return None


def _content_text(content: Any) -> str | None:
    """Message content as text: a string, or a list of OpenAI text parts joined."""
    text = _text_value(content)
    if text is not None:
        return text
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    return None


class _RowProblems:
    def __init__(self, number: int):
        self.number = number
        self.items: list[Problem] = []

    def add(self, kind: str, message: str) -> None:
        self.items.append(Problem(self.number, kind, message))

    @property
    def fatal(self) -> bool:
        return any(p.drops_row for p in self.items)


def _field(record: dict, names: tuple[str, ...], found: _RowProblems, label: str,
           required: bool = True) -> str | None:
    for name in names:
        if name in record and record[name] is not None:
            value = _text_value(record[name])
            if value is None:
                found.add(P.BAD_TYPE, f"`{name}` is a {type(record[name]).__name__}, not text")
                return None
            if not value.strip():
                if required:
                    found.add(P.EMPTY, f"`{name}` is empty")
                return None
            return value
    if required:
        found.add(P.MISSING_FIELD, f"missing field `{label}`")
    return None


def _system_column(record: dict) -> str | None:
    value = record.get("system")
    return value if isinstance(value, str) and value.strip() else None


def _normalize_alpaca(record: dict, found: _RowProblems) -> Row | None:
    instruction = _field(record, ("instruction", "prompt"), found, "instruction")
    output = _field(record, ALPACA_OUTPUT_COLUMNS + ("completion",), found, "output")
    context = _field(record, ("input", "context"), found, "input", required=False) or ""
    if instruction is None or output is None:
        return None
    user = f"{instruction}\n\n{context}" if context else instruction
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    system = _system_column(record)
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return Row(found.number, messages=messages, instruction=(instruction, context))


def _turns(value: Any, found: _RowProblems, where: str) -> list[dict] | None:
    """Canonical turns from a list of {role, content} or {from, value} dicts."""
    value = as_list(value)
    if not isinstance(value, (list, tuple)):
        found.add(P.BAD_TYPE, f"`{where}` is a {type(value).__name__}, not a list of turns")
        return None
    if not value:
        found.add(P.EMPTY, f"`{where}` has no turns")
        return None
    turns = []
    for index, turn in enumerate(value, start=1):
        if not isinstance(turn, dict):
            found.add(P.BAD_TYPE, f"turn {index} of `{where}` is a {type(turn).__name__}, not an "
                                  "object")
            continue
        role_key = "role" if "role" in turn else "from" if "from" in turn else None
        content_key = "content" if "content" in turn else "value" if "value" in turn else None
        if role_key is None or content_key is None:
            missing = " and ".join(f"`{k}`" for k, ok in (("role", role_key), ("content", content_key))
                                   if not ok)
            found.add(P.MISSING_FIELD, f"turn {index} of `{where}` has no {missing} "
                                       f"(keys: {', '.join(map(str, turn)) or 'none'})")
            continue
        role = canonical_role(turn[role_key])
        if role is None:
            found.add(P.UNKNOWN_ROLE, f"turn {index} has role {turn[role_key]!r}; known roles: "
                                      f"{_KNOWN_ROLES}")
            continue
        content = _content_text(turn[content_key])
        if content is None:
            if turn[content_key] is None:
                found.add(P.MISSING_FIELD, f"turn {index} ({role}) has no content")
            else:
                found.add(P.BAD_TYPE, f"turn {index} ({role}) content is a "
                                      f"{type(turn[content_key]).__name__}, not text")
            continue
        if not content.strip():
            found.add(P.EMPTY, f"turn {index} ({role}) is empty")
            continue
        turns.append({"role": role, "content": content})
    return turns


def _normalize_conversation(record: dict, found: _RowProblems) -> Row | None:
    column = next((c for c in CONVERSATION_COLUMNS if record.get(c) is not None), None)
    if column is None:
        found.add(P.MISSING_FIELD, "missing field `messages` (or `conversations`)")
        return None
    turns = _turns(record[column], found, column)
    if turns is None or found.fatal:
        return None
    system = _system_column(record)
    if system and not any(t["role"] == "system" for t in turns):
        turns.insert(0, {"role": "system", "content": system})
    last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=None)
    if last is None:
        found.add(P.NO_ASSISTANT, "the conversation has no assistant turn, so there is nothing "
                                  "to learn")
        return None
    if last < len(turns) - 1:
        dropped = len(turns) - 1 - last
        found.add(P.NOT_ENDING_WITH_ASSISTANT,
                  f"the conversation ends with a {turns[-1]['role']} turn; the last {dropped} "
                  f"turn(s) after the final assistant reply are ignored")
        turns = turns[:last + 1]
    return Row(found.number, messages=turns)


def _normalize_text(record: dict, found: _RowProblems) -> Row | None:
    text = _field(record, ("text",), found, "text")
    return None if text is None else Row(found.number, text=text)


def _reply(value: Any, found: _RowProblems, name: str) -> list[dict] | None:
    if value is None:
        found.add(P.MISSING_FIELD, f"missing field `{name}`")
        return None
    value = as_list(value)
    if isinstance(value, list):
        return _turns(value, found, name)
    text = _text_value(value)
    if text is None:
        found.add(P.BAD_TYPE, f"`{name}` is a {type(value).__name__}, not text or turns")
        return None
    if not text.strip():
        found.add(P.EMPTY, f"`{name}` is empty")
        return None
    return [{"role": "assistant", "content": text}]


def _normalize_preference(record: dict, found: _RowProblems) -> Row | None:
    chosen = _reply(record.get("chosen"), found, "chosen")
    rejected = _reply(record.get("rejected"), found, "rejected")
    prompt: list[dict] = []
    raw_prompt = as_list(record.get("prompt"))
    if isinstance(raw_prompt, list):
        prompt = _turns(raw_prompt, found, "prompt") or []
    elif raw_prompt is not None:
        text = _text_value(raw_prompt)
        if text is None:
            found.add(P.BAD_TYPE, f"`prompt` is a {type(raw_prompt).__name__}, not text or turns")
        elif not text.strip():
            found.add(P.EMPTY, "`prompt` is empty")
        else:
            prompt = [{"role": "user", "content": text}]
    if chosen is None or rejected is None or found.fatal:
        return None
    if not prompt:  # implicit prompt: the turns chosen and rejected share
        shared = 0
        while (shared < min(len(chosen), len(rejected)) - 1
               and chosen[shared] == rejected[shared]):
            shared += 1
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
        if not prompt:
            found.add(P.MISSING_FIELD, "no `prompt` column and no shared prompt turns in "
                                       "`chosen`/`rejected`")
            return None
    if chosen == rejected:
        found.add(P.IDENTICAL_PAIR, "`chosen` and `rejected` are identical")
        return None
    return Row(found.number, messages=prompt, chosen=chosen, rejected=rejected)


_NORMALIZERS = {
    ALPACA: _normalize_alpaca,
    SHAREGPT: _normalize_conversation,
    MESSAGES: _normalize_conversation,
    TEXT: _normalize_text,
    PREFERENCE: _normalize_preference,
}


def normalize_record(record: Any, fmt: str, number: int) -> tuple[Row | None, list[Problem]]:
    """The canonical row for one raw record (None when unusable) and the problems found in it."""
    found = _RowProblems(number)
    if not isinstance(record, dict):
        found.add(P.BAD_TYPE, f"the row is a {type(record).__name__}, not an object with fields")
        return None, found.items
    row = _NORMALIZERS[fmt](record, found)
    if found.fatal:
        row = None
    return row, found.items
