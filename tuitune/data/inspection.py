"""`inspect_data`: format, row counts, token-length statistics, recommended max length, problems."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tuitune.data import problems as P
from tuitune.data.formats import FORMATS
from tuitune.data.loading import LoadedData, load_rows
from tuitune.data.problems import Problem
from tuitune.data.rendering import TemplateFailure, render_row

LENGTH_MULTIPLE = 64
TOKEN_SAMPLE_ROWS = 20_000  # larger datasets get token lengths measured on an even sample
_NO_LIMIT = 10_000_000  # tokenizers without a known context report ~1e30 as model_max_length


@dataclass
class InspectReport:
    path: str
    format: str
    format_reason: str
    row_count: int                       # rows in the source
    usable_rows: int                     # rows left after dropping unusable ones
    mean_tokens: float = 0.0
    median_tokens: float = 0.0
    p95_tokens: int = 0
    p99_tokens: int = 0
    max_tokens: int = 0
    recommended_max_seq_length: int | None = None
    max_seq_length: int | None = None    # the limit rows were checked against (None: no limit)
    model_context: int | None = None
    trainable: bool = True               # whether some training objective takes this format
    lengths: list[int] = field(default_factory=list, repr=False)   # per usable row, for histograms
    problems: list[Problem] = field(default_factory=list)
    samples: list[str] = field(default_factory=list, repr=False)   # formatted training texts
    measured_rows: int = 0               # rows whose tokens were counted (a sample when large)
    notes: list[str] = field(default_factory=list)   # how the data was read and measured

    @property
    def usable(self) -> bool:
        return self.usable_rows > 0


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def model_context(tokenizer) -> int | None:
    """The model's context length: the tokenizer's `model_max_length` when it is a real limit,
    else `max_position_embeddings` from the config.json beside a tokenizer loaded from a folder."""
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < _NO_LIMIT:
        return value
    folder = getattr(tokenizer, "name_or_path", None)
    if not folder:
        return None
    config = Path(folder) / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    data = data.get("text_config", data) if isinstance(data, dict) else {}
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        found = data.get(key)
        if isinstance(found, int) and 0 < found < _NO_LIMIT:
            return found
    return None


def recommend_max_seq_length(p99: int, context: int | None) -> int | None:
    """p99 rounded up to a multiple of 64 (at least 64), capped by the model's context."""
    if p99 <= 0:
        return None
    value = max(LENGTH_MULTIPLE, math.ceil(p99 / LENGTH_MULTIPLE) * LENGTH_MULTIPLE)
    return min(value, context) if context else value


def default_tokenizer(model: str | None = None):
    """The tokenizer of `model`, or of the embedded default model (no weights are loaded)."""
    from tuitune.config import DEFAULT_MODEL
    from tuitune.model_source import load_tokenizer

    return load_tokenizer(model or DEFAULT_MODEL)


def _sample_text(row, tokenizer, system_prompt: str | None) -> str:
    if row.kind == "preference":
        from tuitune.data.normalize import Row

        chosen = render_row(Row(row.number, messages=row.messages + row.chosen), tokenizer,
                            system_prompt=system_prompt).text
        rejected = render_row(Row(row.number, messages=row.messages + row.rejected), tokenizer,
                              system_prompt=system_prompt).text
        return f"[chosen]\n{chosen}\n[rejected]\n{rejected}"
    return render_row(row, tokenizer, system_prompt=system_prompt).text


def inspect_data(path: str | Path | LoadedData, *, format: str | None = None, tokenizer: Any = None,
                 max_seq_length: int | None = None, model: str | None = None,
                 system_prompt: str | None = None, progress: Callable[[int, int], None] | None = None,
                 sample_count: int = 3, columns: object = None, salvage: bool = False,
                 sample_rows: int | None = TOKEN_SAMPLE_ROWS) -> InspectReport:
    """Read (or take an already loaded) dataset and measure it with a tokenizer.

    Without `tokenizer`, the tokenizer of `model` (default: the embedded default model) is
    loaded. Rows are counted as the trainer would render them (chat template or Alpaca prompt).
    `max_seq_length` (else the model's context) is the limit for `too_long` problems. With more
    than `sample_rows` usable rows, token lengths come from an even sample of that many (the
    report's `notes` say so). `columns` and `salvage` are load_rows's.
    """
    from tuitune.data.tokenization import token_lengths

    loaded = path if isinstance(path, LoadedData) else load_rows(
        path, format=format, progress=progress, columns=columns, salvage=salvage)
    if tokenizer is None:
        tokenizer = default_tokenizer(model)
    rows, notes = loaded.rows, list(loaded.notes)
    if sample_rows and len(rows) > sample_rows:
        stride = -(-len(rows) // sample_rows)
        rows = rows[::stride]
        notes.append(f"token statistics from an even sample of {len(rows):,} of the "
                     f"{loaded.usable_rows:,} usable rows (every {stride}th row); length and "
                     "template problems are counted in that sample only")
    measured, template_problems = token_lengths(rows, tokenizer, system_prompt=system_prompt)
    problems = list(loaded.problems) + template_problems
    context = model_context(tokenizer)
    limit = max_seq_length or context
    for number, count in measured:
        if limit and count > limit:
            what = "the max sequence length" if max_seq_length else "the model's context"
            problems.append(Problem(number, P.TOO_LONG, f"{count} tokens, over {what} {limit}; "
                                                        "training truncates it"))
    problems.sort(key=lambda p: p.row)
    lengths = [count for _, count in measured]
    ordered = sorted(lengths)
    failed = {p.row for p in template_problems}
    report = InspectReport(
        path=loaded.path, format=loaded.format, format_reason=loaded.format_reason,
        row_count=loaded.row_count, usable_rows=loaded.usable_rows - len(failed),
        max_seq_length=max_seq_length, model_context=context,
        trainable=FORMATS[loaded.format].trainable, lengths=lengths, problems=problems,
        measured_rows=len(rows), notes=notes)
    if ordered:
        report.mean_tokens = sum(ordered) / len(ordered)
        middle = len(ordered) // 2
        report.median_tokens = (ordered[middle] if len(ordered) % 2
                                else (ordered[middle - 1] + ordered[middle]) / 2)
        report.p95_tokens = percentile(ordered, 95)
        report.p99_tokens = percentile(ordered, 99)
        report.max_tokens = ordered[-1]
        report.recommended_max_seq_length = recommend_max_seq_length(report.p99_tokens, context)
    for row in rows:
        if len(report.samples) >= sample_count:
            break
        if row.number in failed:
            continue
        try:
            report.samples.append(_sample_text(row, tokenizer, system_prompt))
        except TemplateFailure:
            continue
    return report
