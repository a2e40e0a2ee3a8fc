"""`seqrec data prepare | list | download`."""

from __future__ import annotations

import json

import click

from seqrec.cli.app import data, print_summary
from seqrec.data.formats import FORMATS


@data.command("prepare")
@click.argument("source")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="File format; detected from the extension and content when omitted. pairs = 'user item' "
                   "lines in time order (SASRec files); sequences = 'user item item ...' lines; sessions = one "
                   "session per line, items separated by commas.")
@click.option("--columns", default=None, metavar="MAP",
              help="Map canonical columns onto the file's columns by name or 0-based position, e.g. "
                   "'user=uid,item=sku,time=ts' or 'user=0,item=1,time=3'. Canonical names: user, item, time, "
                   "rating, session.")
@click.option("--separator", default=None, help="Field separator of CSV/TSV files (detected when omitted); "
              "use '\\t' for tab.")
@click.option("--header/--no-header", default=None, help="Whether the first CSV/TSV line is a header "
              "(detected when omitted).")
@click.option("--min-user-count", type=click.IntRange(min=0), default=0, show_default=True,
              help="k-core: drop users with fewer interactions, repeated with --min-item-count to a fixed point.")
@click.option("--min-item-count", type=click.IntRange(min=0), default=0, show_default=True,
              help="k-core: drop items with fewer interactions.")
@click.option("--dedupe", is_flag=True, help="Drop exact duplicate rows (the first one is kept).")
@click.option("--min-rating", type=float, default=None, help="Keep only interactions rated at least this.")
@click.option("--split", "split_name", type=click.Choice(["loo", "temporal", "none"]), default="loo",
              show_default=True, help="Split to summarise: leave-one-out per user, global temporal, or none.")
@click.option("--valid-fraction", type=float, default=0.1, show_default=True,
              help="Temporal split: share of the latest interactions for validation.")
@click.option("--test-fraction", type=float, default=0.1, show_default=True,
              help="Temporal split: share of the latest interactions for test.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Prepared-data cache folder (default: $SEQREC_CACHE or ~/.cache/seqrec/prepared).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def data_prepare(source: str, fmt: str | None, columns: str | None, separator: str | None, header: bool | None,
                 min_user_count: int, min_item_count: int, dedupe: bool, min_rating: float | None, split_name: str,
                 valid_fraction: float, test_fraction: float, cache_dir: str | None, no_cache: bool,
                 as_json: bool) -> None:
    """Read SOURCE (a file, or 'demo' for the built-in synthetic data), clean it, cache it and summarise it."""
    from seqrec.data import splits
    from seqrec.data.pipeline import load

    mapping = None
    if columns:
        from seqrec.data.readers import parse_column_mapping  # polars: only when a file is read anyway

        mapping = parse_column_mapping(columns)
    if separator == "\\t":
        separator = "\t"
    data = load(source, format=fmt, columns=mapping, separator=separator, header=header,
                use_cache=not no_cache, cache_dir=cache_dir, dedupe=dedupe, min_rating=min_rating,
                min_user_count=min_user_count, min_item_count=min_item_count)
    summary = data.summary()
    if split_name == "loo":
        summary["split"] = splits.leave_one_out(data).summary()
    elif split_name == "temporal":
        summary["split"] = splits.temporal(data, valid_fraction=valid_fraction,
                                           test_fraction=test_fraction).summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
    else:
        print_summary(summary)


@data.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def data_list(as_json: bool) -> None:
    """List the public datasets `seqrec data download` knows."""
    from seqrec.data.registry import list_datasets

    specs = list_datasets()
    if as_json:
        click.echo(json.dumps([{"name": s.name, "url": s.url, "checksum": s.checksum, "format": s.format,
                                "description": s.description} for s in specs], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "description", "format", "url")
    for spec in specs:
        table.add_row(spec.name, spec.description, spec.format, spec.url)
    Console().print(table)


@data.command("download")
@click.argument("name")
@click.option("--dest", type=click.Path(file_okay=False), default=None,
              help="Folder to unpack into (default: $SEQREC_DATASETS or ~/.cache/seqrec/datasets).")
@click.option("--mirror", default=None, help="Base URL of a mirror holding the same file name.")
@click.option("--checksum", default=None, help="Expected checksum 'sha256:HEX' or 'md5:HEX' (needed for "
              "datasets without a published one).")
@click.option("--force", is_flag=True, help="Download again even if the dataset is already there.")
@click.option("--no-progress", is_flag=True, help="Do not show a progress bar.")
def data_download(name: str, dest: str | None, mirror: str | None, checksum: str | None, force: bool,
                  no_progress: bool) -> None:
    """Download public dataset NAME (see `seqrec data list`), verify its checksum and unpack it."""
    from seqrec.data.download import download

    folder = download(name, dest, mirror=mirror, checksum=checksum, force=force, progress=not no_progress)
    click.echo(str(folder))
