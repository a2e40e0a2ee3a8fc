"""The `seqrec` command group, its `data` subgroup, and the terminal output the commands share (result tables,
summaries, logging)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="seqrec")
def cli() -> None:
    """seqrec: sequential and session-based recommendation.

    Prepare interaction logs, train and evaluate models with full-ranking metrics, and recommend.
    """


@cli.group()
def data() -> None:
    """Read, clean, split and cache interaction logs; list and download public datasets."""


def setup_logging(quiet: bool) -> None:
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("seqrec")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def print_results(rows: dict[str, dict[str, float]], title: str) -> None:
    from seqrec.evaluate.report import format_table

    click.echo(title)
    click.echo(format_table(rows, metrics=HEADLINE))


HEADLINE = ["HR@1", "HR@10", "NDCG@10", "HR@50", "NDCG@50", "MRR"]


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("", "value", show_header=False, title="prepared data")
    split = summary.pop("split", None)
    for key, value in summary.items():
        table.add_row(key, show(key, value))
    if split:
        for key, value in split.items():
            table.add_row(f"split.{key}", show(key, value))
    Console().print(table)


def show(key: str, value: object) -> str:
    if key in ("time_min", "time_max", "valid_time", "test_time") and isinstance(value, int) \
            and 1e8 < value < 1e10:
        return f"{value} ({datetime.fromtimestamp(value, UTC):%Y-%m-%d %H:%M:%S} UTC)"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def cell(value: object) -> str:
    """A table cell: '-' for nothing, floats to 4 significant digits."""
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)

