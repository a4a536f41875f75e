"""Rendering rows for people (rich tables) and programs (CSV, JSON) on stdout."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table


def render(rows: list[dict[str, Any]], fmt: str, *, title: str = "") -> None:
    if fmt == "json":
        json.dump(rows, sys.stdout, default=str, indent=2)
        sys.stdout.write("\n")
        return
    columns = list(rows[0]) if rows else []
    if fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        return
    table = Table(title=title)
    for column in columns:
        # a narrow terminal folds values onto more lines rather than cutting them off
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    Console().print(table if rows else f"{title}: no rows")
