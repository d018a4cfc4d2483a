"""A dataset's first raw records as a table: one column per source column, long cells shortened."""

from __future__ import annotations

import json
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

TABLE_ROWS = 500          # raw rows shown in the table (the file may hold millions)
CELL_CHARS = 40           # a table cell shows at most this many characters


def cell_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = text.replace("\n", "⏎ ")
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


class RawRowsTable(DataTable):
    """Row keys are the source's 1-based row numbers. Cells are plain text (a dataset's `[INST]` or
    `[/]` is data, not markup), and columns get their widths when filled: left to DataTable's idle-time
    measuring, rows painted before it ran kept their header-wide columns."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    def show(self, data: Any) -> int:
        """Show the first TABLE_ROWS records of loaded data (`columns`, `row_count`, `raw_row(n)`);
        the number of rows shown."""
        self.clear(columns=True)
        columns = list(data.columns)
        shown = min(data.row_count, TABLE_ROWS)
        rows = [(str(number), *self._cells(data, number, columns)) for number in range(1, shown + 1)]
        labels = ["#", *columns]
        for index, label in enumerate(labels):
            widest = max((cell_len(row[index]) for row in rows), default=0)
            self.add_column(Text(label), key=label, width=max(cell_len(label), widest))
        for row in rows:
            self.add_row(*(Text(cell) for cell in row), key=row[0])
        self.border_subtitle = (f"first {shown} of {data.row_count:,}" if shown < data.row_count
                                else f"{data.row_count:,} rows")
        return shown

    @staticmethod
    def _cells(data: Any, number: int, columns: list[str]) -> list[str]:
        try:
            record = data.raw_row(number)
        except Exception as exc:  # an unreadable line shows as such
            return [cell_text(f"unreadable: {exc}"), *[""] * (len(columns) - 1)]
        return [cell_text(record.get(column, "")) for column in columns]
