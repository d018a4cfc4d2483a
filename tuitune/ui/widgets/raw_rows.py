"""A dataset's first raw records as a table: one column per source column, long cells shortened."""

from __future__ import annotations

import json
from typing import Any

from textual.widgets import DataTable

TABLE_ROWS = 500          # raw rows shown in the table (the file may hold millions)
CELL_CHARS = 40           # a table cell shows at most this many characters


def cell_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = text.replace("\n", "⏎ ")
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


class RawRowsTable(DataTable):
    """Row keys are the source's 1-based row numbers."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    def show(self, data: Any) -> int:
        """Show the first TABLE_ROWS records of loaded data (`columns`, `row_count`, `raw_row(n)`);
        the number of rows shown."""
        self.clear(columns=True)
        columns = list(data.columns)
        self.add_column("#", key="#")
        for column in columns:
            self.add_column(column, key=column)
        shown = min(data.row_count, TABLE_ROWS)
        for number in range(1, shown + 1):
            try:
                record = data.raw_row(number)
            except Exception as exc:  # an unreadable line shows as such
                self.add_row(str(number), cell_text(f"unreadable: {exc}"), *[""] * (len(columns) - 1),
                             key=str(number))
                continue
            self.add_row(str(number), *[cell_text(record.get(c, "")) for c in columns], key=str(number))
        self.border_subtitle = (f"first {shown} of {data.row_count:,}" if shown < data.row_count
                                else f"{data.row_count:,} rows")
        return shown
