"""Problems found in a dataset: one record per row and kind, with 1-based row numbers."""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

# Kinds of problem. Those in DROPPING make the row unusable; the others are warnings.
EMPTY = "empty"                      # an empty text, instruction, reply or turn
MISSING_FIELD = "missing_field"      # a field the format needs is absent or null
BAD_TYPE = "bad_type"                # a field holds the wrong kind of value
UNKNOWN_ROLE = "unknown_role"        # a turn whose role is not system/user/assistant (or an alias)
NO_ASSISTANT = "no_assistant"        # a conversation without any assistant turn
NOT_ENDING_WITH_ASSISTANT = "not_ending_with_assistant"  # trailing turns after the last reply (dropped)
UNREADABLE = "unreadable"            # a row that could not be parsed (a bad JSON line)
DUPLICATE = "duplicate"              # the same content as an earlier row (the later copy is dropped)
IDENTICAL_PAIR = "identical_pair"    # a preference pair whose chosen and rejected replies are equal
TOO_LONG = "too_long"                # more tokens than the max sequence length (truncated in training)
NO_LOSS_TOKENS = "no_loss_tokens"    # after truncation no token of the row gets loss (dropped in training)
TEMPLATE_ERROR = "template_error"    # the tokenizer's chat template refused the conversation

DROPPING = frozenset({EMPTY, MISSING_FIELD, BAD_TYPE, UNKNOWN_ROLE, NO_ASSISTANT, UNREADABLE,
                      DUPLICATE, IDENTICAL_PAIR, NO_LOSS_TOKENS, TEMPLATE_ERROR})

TITLES = {
    EMPTY: "empty text",
    MISSING_FIELD: "missing fields",
    BAD_TYPE: "wrong field types",
    UNKNOWN_ROLE: "unknown roles",
    NO_ASSISTANT: "no assistant reply",
    NOT_ENDING_WITH_ASSISTANT: "not ending with an assistant turn",
    UNREADABLE: "unreadable rows",
    DUPLICATE: "duplicate rows",
    IDENTICAL_PAIR: "chosen equals rejected",
    TOO_LONG: "over the max length (truncated)",
    NO_LOSS_TOKENS: "nothing left to learn after truncation",
    TEMPLATE_ERROR: "chat template errors",
}


class Problem(NamedTuple):
    """One problem: `row` is 1-based (the first data row is 1), `kind` one of the constants above."""

    row: int
    kind: str
    message: str

    @property
    def drops_row(self) -> bool:
        return self.kind in DROPPING

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}"


def group_problems(problems: list[Problem]) -> "OrderedDict[str, list[Problem]]":
    """Problems grouped by kind, kinds in order of first appearance, rows in order within a kind."""
    groups: OrderedDict[str, list[Problem]] = OrderedDict()
    for problem in sorted(problems, key=lambda p: p.row):
        groups.setdefault(problem.kind, []).append(problem)
    return groups


def format_problems(problems: list[Problem], *, per_kind: int = 20) -> list[str]:
    """Human-readable lines: a heading per kind with its count, then up to `per_kind` rows each."""
    lines: list[str] = []
    for kind, items in group_problems(problems).items():
        rows = len({p.row for p in items})
        effect = "rows dropped" if kind in DROPPING else "warning"
        lines.append(f"{TITLES.get(kind, kind)}: {len(items)} in {rows} row(s) ({effect})")
        for problem in items[:per_kind]:
            lines.append(f"  {problem}")
        if len(items) > per_kind:
            shown = ", ".join(str(p.row) for p in items[per_kind:per_kind + 30])
            more = len(items) - per_kind
            tail = " ..." if more > 30 else ""
            lines.append(f"  ... and {more} more (rows {shown}{tail})")
    return lines
