"""Rich tables for query results and summaries, and the progress bar the commands share."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from query.app import jsonable
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table


def progress_bar(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    )


def result_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold cyan")
    for column in columns:
        table.add_column(column, overflow="fold", max_width=60, no_wrap=column != "body")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return "[dim]∅[/dim]"
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        small = isinstance(exponent, int) and exponent < -4
        shown = value.quantize(Decimal("0.0001")) if small else value
        return format(shown.normalize(), "f")
    if isinstance(value, datetime):
        text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        return text.removesuffix(":00") + "Z"
    rendered = jsonable(value)
    if isinstance(rendered, float):
        return f"{rendered:.4g}"
    text = str(rendered)
    return text if len(text) <= 120 else text[:117] + "…"
