"""What the Dataset screen writes about a dataset: the summary lines, and a row's content before
the tokenizer that renders it as training text is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plain_rendering(row: Any) -> str:
    """A row's content without a tokenizer (shown until the tokenizer is loaded)."""
    if row.text is not None:
        return row.text
    parts = [f"<{m['role']}>\n{m['content']}" for m in (row.messages or [])]
    if row.chosen is not None:
        parts += [f"<chosen>\n{m['content']}" for m in row.chosen]
        parts += [f"<rejected>\n{m['content']}" for m in row.rejected or []]
    return "\n\n".join(parts)


def summary_text(data: Any, report: Any, *, reading: bool, max_seq_length: int) -> str:
    """File, format, rows, token statistics (once measured) and how the data was read."""
    lines = [
        f"file       {Path(str(data.path)).name}",
        f"format     {data.format} ({data.format_reason})",
        f"rows       {data.row_count:,} ({data.usable_rows:,} usable)",
    ]
    if report is not None:
        measured = len(report.lengths)
        if measured < data.usable_rows:
            lines.append(f"tokens     measured on an even sample of {measured:,} rows")
        lines += [
            f"tokens     mean {report.mean_tokens:,.0f}  median {report.median_tokens:,.0f}  "
            f"p95 {report.p95_tokens:,}  p99 {report.p99_tokens:,}  max {report.max_tokens:,}",
            f"max length {report.recommended_max_seq_length or '-'} recommended "
            f"(config: {max_seq_length:,})",
        ]
    else:
        lines.append("tokens     measuring…" if reading else "tokens     not measured")
    lines += [f"note       {note}" for note in data.notes]
    return "\n".join(lines)
