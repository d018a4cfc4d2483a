"""Column mapping: reading data whose fields have other names (`question`/`answer`, a `dialog` of
turns with `speaker`/`text`, ...) as one of the formats tuitune knows.

A mapping says, for a name tuitune reads, which name the data uses: `instruction=question,
output=answer`. It is written as that text (in `data.columns`, `--map` and the Dataset screen) or
as a TOML table. Three kinds of names can be mapped:

- columns: instruction, input, output, system, messages, text, prompt, chosen, rejected;
- keys inside each turn of the conversation column: role, content;
- role values: user, assistant (`assistant=agent` reads a turn whose role is "agent" as the
  assistant's).

Pure Python; every bad mapping raises TuituneError naming the item.
"""

from __future__ import annotations

from typing import Any, Iterable

from tuitune.data.formats import CONVERSATION_COLUMNS, as_list
from tuitune.errors import TuituneError

COLUMN_TARGETS = ("instruction", "input", "output", "system", "messages", "text", "prompt",
                  "chosen", "rejected")
TURN_TARGETS = ("role", "content")
ROLE_TARGETS = ("user", "assistant")
TARGETS = COLUMN_TARGETS + TURN_TARGETS + ROLE_TARGETS

# Names seen in the wild, for suggestions when detection fails (first match wins).
_INSTRUCTION_NAMES = ("question", "query", "prompt", "instruction", "input", "problem", "request",
                      "user", "human", "source", "src", "inputs")
_OUTPUT_NAMES = ("answer", "response", "output", "target", "completion", "reply", "solution",
                 "assistant", "gpt", "tgt", "targets", "label", "answers")
_CONTEXT_NAMES = ("context", "passage", "document")
_TEXT_NAMES = ("content", "document", "body", "passage", "article", "story", "sentence", "raw")
_ROLE_KEYS = ("role", "from", "speaker", "author", "sender", "who", "participant", "user")
_CONTENT_KEYS = ("content", "value", "text", "message", "utterance", "body", "msg")
_TURN_COLUMNS = CONVERSATION_COLUMNS + ("dialog", "turns", "dialogue", "utterances", "history",
                                        "thread")


class ColumnMapping(dict):
    """target name -> the data's name. Built by `parse_mapping`; empty means no mapping."""

    @property
    def columns(self) -> dict[str, str]:
        return {t: s for t, s in self.items() if t in COLUMN_TARGETS}

    @property
    def turns(self) -> dict[str, str]:
        return {t: s for t, s in self.items() if t in TURN_TARGETS}

    @property
    def roles(self) -> dict[str, str]:
        """The data's role value (lower case) -> canonical role."""
        return {s.strip().lower(): t for t, s in self.items() if t in ROLE_TARGETS}

    def text(self) -> str:
        """The canonical text form, `instruction=question,output=answer`."""
        return ",".join(f"{t}={s}" for t, s in self.items())


def _bad(item: str, why: str, source: str) -> TuituneError:
    return TuituneError(f"{source}: {item!r} {why}. Write name=column pairs separated by commas, "
                        f"for example instruction=question,output=answer; names tuitune reads: "
                        f"{', '.join(TARGETS)}.")


def parse_mapping(value: Any, source: str = "data.columns") -> ColumnMapping:
    """A ColumnMapping from `instruction=question,output=answer`, a dict, or None/""."""
    pairs: list[tuple[Any, Any]]
    if value is None:
        return ColumnMapping()
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, str):
        pairs = []
        for item in value.split(","):
            if not item.strip():
                continue
            target, sep, name = item.partition("=")
            if not sep:
                raise _bad(item.strip(), "is not name=column", source)
            pairs.append((target, name))
    else:
        raise TuituneError(f"{source} must be text like instruction=question,output=answer or a "
                           f"table of names, got {type(value).__name__}.")
    mapping = ColumnMapping()
    for target, name in pairs:
        item = f"{target}={name}"
        if not isinstance(target, str) or not isinstance(name, str):
            raise _bad(item, "maps a name to something that is not text", source)
        target, name = target.strip().lower(), name.strip()
        if target not in TARGETS:
            raise _bad(item, f"maps `{target}`, which is not a name tuitune reads", source)
        if not name:
            raise _bad(item, "names no column", source)
        if any(ord(c) < 32 for c in name) or "," in name or "=" in name:
            raise _bad(item, "holds a comma, an equals sign or a control character", source)
        if target in mapping:
            raise _bad(item, f"maps `{target}` a second time", source)
        mapping[target] = name
    column_sources = [s for t, s in mapping.items() if t in COLUMN_TARGETS]
    repeated = {s for s in column_sources if column_sources.count(s) > 1}
    if repeated:
        raise TuituneError(f"{source}: column `{sorted(repeated)[0]}` is mapped to two names; map "
                           "each column once.")
    if mapping.get("user") and mapping.get("assistant") and (
            mapping["user"].lower() == mapping["assistant"].lower()):
        raise TuituneError(f"{source}: user and assistant are both mapped to role "
                           f"{mapping['user']!r}; they must differ.")
    return mapping


def mapping_text(value: Any) -> str:
    """The canonical text of a mapping given as text or a table (raises TuituneError)."""
    return parse_mapping(value).text()


def mapped_columns(columns: Iterable[str], mapping: ColumnMapping) -> list[str]:
    """The column names as tuitune sees them once `mapping` is applied."""
    sources = {s: t for t, s in mapping.columns.items()}
    seen: dict[str, None] = {}
    for column in columns:
        seen[sources.get(column, column)] = None
    return list(seen)


class MissingColumnError(TuituneError):
    """The mapping names a column the data lacks; `columns` are the ones it has."""

    def __init__(self, message: str, columns: list[str]):
        super().__init__(message)
        self.columns = columns


def check_columns(mapping: ColumnMapping, columns: list[str], where: str) -> None:
    """Raise MissingColumnError when the mapping names a column the data does not have."""
    missing = [(t, s) for t, s in mapping.columns.items() if s not in columns]
    if missing:
        target, name = missing[0]
        seen = ", ".join(f"`{c}`" for c in columns[:20]) or "none"
        raise MissingColumnError(f"The column mapping reads `{target}` from column `{name}`, but "
                                 f"{where} has no such column (columns seen: {seen}). Fix "
                                 "data.columns (or --map).", list(columns))


def _map_turn(turn: Any, turns: dict[str, str], roles: dict[str, str]) -> Any:
    if not isinstance(turn, dict):
        return turn
    out = {k: v for k, v in turn.items() if k not in turns.values()}
    for target, name in turns.items():
        if name in turn:
            out[target] = turn[name]
    role = out.get("role")
    if roles and isinstance(role, str) and role.strip().lower() in roles:
        out["role"] = roles[role.strip().lower()]
    return out


def map_record(record: Any, mapping: ColumnMapping) -> Any:
    """The record with the mapped names renamed (other fields kept); non-dicts pass through."""
    if not mapping or not isinstance(record, dict):
        return record
    columns = mapping.columns
    out = {k: v for k, v in record.items() if k not in columns.values()}
    for target, name in columns.items():
        if name in record:
            out[target] = record[name]
    turns, roles = mapping.turns, mapping.roles
    if turns or roles:
        column = next((c for c in CONVERSATION_COLUMNS if c in out), None)
        if column is not None:
            value = as_list(out[column])
            if isinstance(value, (list, tuple)):
                out[column] = [_map_turn(turn, turns, roles) for turn in value]
    return out


def _first(names: Iterable[str], present: dict[str, str], skip: set[str]) -> str | None:
    for name in names:
        actual = present.get(name)
        if actual is not None and actual not in skip:
            return actual
    return None


def _expressible(name: Any) -> bool:
    """Whether `name` survives `parse_mapping` unchanged: text, no surrounding blanks, no separators."""
    return (isinstance(name, str) and bool(name) and name == name.strip() and "," not in name
            and "=" not in name and not any(ord(c) < 32 for c in name))


def suggest_mapping(columns: list[str], rows: list[dict]) -> ColumnMapping | None:
    """A likely mapping for columns no format recognised, from common names; None if no guess."""
    # Only names a mapping can spell (tuitune reads `name=column,...`) can be suggested.
    columns = [c for c in columns if _expressible(c)]
    present = {c.strip().lower(): c for c in columns}
    rows = [r for r in rows if isinstance(r, dict)]
    mapping = ColumnMapping()
    # A column holding lists of turns: a conversation.
    for column in list(dict.fromkeys([present[n] for n in _TURN_COLUMNS if n in present] + columns)):
        turn_keys = None
        for row in rows:
            value = as_list(row.get(column))
            if isinstance(value, (list, tuple)) and value and isinstance(value[0], dict):
                turn_keys = {k.lower(): k for k in value[0] if _expressible(k)}
                break
        if turn_keys is None:
            continue
        role = _first(_ROLE_KEYS, turn_keys, set())
        content = _first(_CONTENT_KEYS, turn_keys, {role} if role else set())
        if role is None or content is None:
            continue
        if column != "messages":
            mapping["messages"] = column
        if role != "role":
            mapping["role"] = role
        if content != "content":
            mapping["content"] = content
        return mapping or None
    # An instruction and a reply.
    instruction = _first(_INSTRUCTION_NAMES, present, set())
    output = _first(_OUTPUT_NAMES, present, {instruction} if instruction else set())
    if instruction and output:
        mapping["instruction"] = instruction
        mapping["output"] = output
        context = _first(_CONTEXT_NAMES, present, {instruction, output})
        if context:
            mapping["input"] = context
        return mapping
    # One text column.
    strings = [c for c in columns if rows and all(isinstance(r.get(c), str) for r in rows if c in r)]
    text = _first(_TEXT_NAMES, {c.lower(): c for c in strings}, set())
    if text is None and strings == columns and len(columns) == 1:  # the only column, all text
        text = strings[0]
    if text is not None:
        mapping["text"] = text
        return mapping
    return None
