"""`seqrec recommend` and `serve`: answers from a trained run, on the terminal or over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from seqrec.cli.app import cli
from seqrec.errors import SeqrecError

if TYPE_CHECKING:  # names for annotations only: importing them at run time would load torch at start-up
    from seqrec.recommend import Recommender


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--user", default=None, help="A known user's raw id; their whole log is the history.")
@click.option("--items", default=None, metavar="ID,ID,...", help="A raw item history, oldest first.")
@click.option("--times", default=None, metavar="T,T,...",
              help="With --items: one integer timestamp per item (needed by a model that reads them, e.g. "
                   "time_bias: true).")
@click.option("--ratings", default=None, metavar="R,R,...",
              help="With --items: one rating per item (needed by a model that reads them, e.g. "
                   "inputs: items_ratings or interleaved).")
@click.option("--users-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Recommend for many users: a text file with one user id per line, or a CSV/TSV/Parquet file "
                   "with a 'user' column (else the first). Written as CSV (or Parquet, by --output's extension).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="With --users-file: write the table here (.csv or .parquet) instead of printing CSV.")
@click.option("-k", "--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Items to return.")
@click.option("--exclude-seen/--include-seen", default=True, show_default=True,
              help="Never recommend items already in the history.")
@click.option("--ignore-unknown", is_flag=True, help="Drop unknown item ids of --items instead of failing.")
@click.option("--titles", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Item metadata to show titles: MovieLens movies.dat (id::title::genres), ML-100K u.item "
                   "(id|title|...) or a CSV/TSV whose item column (else the first) holds the id and whose 'title' "
                   "column (else the next) the title.")
@click.option("--item-map", default=None, metavar="PATH|identity",
              help="With --titles: a 'run_id original_id' file mapping the run's item ids to the metadata's (found "
                   "by itself when a '*_to_original_items.txt' lies beside the run's data file), or 'identity'. "
                   "Needed for a run trained on a renumbered copy (pairs, sequences, sessions files).")
@click.option("--ann", is_flag=True, help="Approximate top-k with a faiss HNSW index (pip install 'seqrec[ann]').")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def recommend(run_dir: str, user: str | None, items: str | None, times: str | None, ratings: str | None,
              users_file: str | None, output: str | None, k: int, exclude_seen: bool, ignore_unknown: bool,
              titles: str | None, item_map: str | None, ann: bool, as_json: bool) -> None:
    """Top-k items for a user (--user), a raw item history (--items) or many users (--users-file).

    Item ids in and out are the ids of the run's data file; --titles are joined through --item-map when the run
    was trained on a renumbered copy (the SASRec ML-1M file's map is found by itself).
    """
    from seqrec.recommend import Recommender, item_titles

    given = [name for name, value in (("--user", user), ("--items", items), ("--users-file", users_file))
             if value is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --user, --items or --users-file")
    if output is not None and users_file is None:
        raise click.UsageError("--output goes with --users-file")
    if times is not None and items is None:
        raise click.UsageError("--times goes with --items")
    if ratings is not None and items is None:
        raise click.UsageError("--ratings goes with --items")
    if item_map is not None and titles is None:
        raise click.UsageError("--item-map goes with --titles")
    stamps = _integers(times, "--times") if times is not None else None
    rated = _numbers(ratings, "--ratings") if ratings is not None else None
    rec = Recommender.load(run_dir, ann=ann)
    names = None
    if titles:
        names, how = item_titles(rec, titles, item_map)
        click.echo(how, err=True)
    if users_file is not None:
        _recommend_users_file(rec, users_file, output, k, exclude_seen, names)
        return
    history = [part.strip() for part in items.split(",") if part.strip()] if items is not None else None
    answer = rec.recommend(user, history=history, k=k, exclude_seen=exclude_seen, ignore_unknown=ignore_unknown,
                           times=stamps, ratings=rated)
    rows = [{"rank": rank, "item": item, "score": score, **({"title": names.get(str(item))} if names else {})}
            for rank, (item, score) in enumerate(answer.items, 1)]
    if as_json:
        click.echo(json.dumps({**answer.to_dict(), "items": rows}, indent=1, default=str))
        return
    what = f"user {user}" if user is not None else f"a history of {answer.history_length} items"
    click.echo(f"top-{k} for {what}" + (f" (the model read the last {answer.used_length})"
                                         if answer.truncated else ""))
    if answer.ignored:
        click.echo(f"ignored unknown item ids: {', '.join(map(str, answer.ignored))}")
    for row in rows:
        title = f"  {row['title']}" if names else ""
        click.echo(f"{row['rank']:>4}  {row['item']!s:>10}  {row['score']:.4f}{title}")


def _integers(text: str, option: str) -> list[int]:
    """'1,2,3' -> [1, 2, 3]; a UsageError naming the value that is not an integer."""
    values = []
    for position, part in enumerate((p.strip() for p in text.split(",")), 1):
        try:
            values.append(int(part))
        except ValueError:
            raise click.UsageError(f"{option}: value {position} ({part!r}) is not an integer timestamp") from None
    return values


def _numbers(text: str, option: str) -> list[float]:
    """'4,3.5,5' -> [4.0, 3.5, 5.0]; a UsageError naming the value that is not a finite number."""
    import math

    values = []
    for position, part in enumerate((p.strip() for p in text.split(",")), 1):
        try:
            value = float(part)
        except ValueError:
            value = float("nan")
        if not math.isfinite(value):
            raise click.UsageError(f"{option}: value {position} ({part!r}) is not a number")
        values.append(value)
    return values


def _recommend_users_file(rec: Recommender, users_file: str, output: str | None, k: int, exclude_seen: bool,
                          names: dict[str, str] | None) -> None:
    import polars as pl

    from seqrec.data.sidefiles import read_user_ids

    table = rec.recommend_batch(read_user_ids(users_file), k=k, exclude_seen=exclude_seen)
    table = table.rename({"query": "user"})
    if names:
        table = table.with_columns(pl.col("item").cast(pl.Utf8).replace_strict(names, default=None).alias("title"))
    if output is None:
        click.echo(table.write_csv(), nl=False)
        return
    import os

    target = Path(output)
    if not target.parent.is_dir():
        raise SeqrecError(f"cannot write {output}: the folder {target.parent} does not exist")
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")   # a file already there stays whole
    try:
        if target.suffix == ".parquet":
            table.write_parquet(partial)
        else:
            table.write_csv(partial)
        os.replace(partial, target)
    except (OSError, pl.exceptions.PolarsError) as error:      # a read-only or full disk, a missing folder
        partial.unlink(missing_ok=True)
        reason = getattr(error, "strerror", None) or str(error).splitlines()[0][:200]
        raise SeqrecError(f"cannot write {output}: {reason}") from None
    else:
        click.echo(f"wrote {table.height} rows ({table['user'].n_unique()} users) to {output}", err=True)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; 127.0.0.1 keeps the service local (0.0.0.0 exposes it).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port.")
@click.option("--max-k", type=click.IntRange(min=1), default=1000, show_default=True, help="Largest k accepted.")
@click.option("--max-items", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Longest history, allow or deny list accepted in one request.")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Largest request body.")
@click.option("--max-batch", type=click.IntRange(min=1), default=64, show_default=True,
              help="Most concurrent requests answered by one forward pass.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Scoring threads (the bounded pool that runs the model).")
@click.option("--torch-threads", type=click.IntRange(min=1), default=None,
              help="torch intra-op threads (default: torch's, one per core).")
@click.option("--access-log", is_flag=True, help="Log every request (slower).")
@click.option("--ann", is_flag=True, help="Approximate top-k with a faiss HNSW index (pip install 'seqrec[ann]').")
@click.option("--api-key-file", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="File holding the API key (its first line; at least 16 characters). Every endpoint but /health "
                   "then needs 'Authorization: Bearer KEY' (or 'X-API-Key: KEY'). Default: $SEQREC_API_KEY.")
@click.option("--no-auth", is_flag=True,
              help="Serve without an API key on a non-loopback --host on purpose (refused otherwise).")
def serve(run_dir: str, host: str, port: int, max_k: int, max_items: int, max_body_bytes: int, max_batch: int,
          threads: int, torch_threads: int | None, access_log: bool, ann: bool, api_key_file: str | None,
          no_auth: bool) -> None:
    """Serve top-k recommendations of a trained run over HTTP (POST /recommend, GET /health, GET /model).

    With an API key (--api-key-file or $SEQREC_API_KEY) every endpoint but /health needs it; a host other than
    loopback without a key is refused unless --no-auth. SIGTERM answers the requests in flight, then exits.
    """
    from seqrec.serve import ServeSettings, check_exposure, resolve_api_key
    from seqrec.serve import serve as run_server

    key, source = resolve_api_key(api_key_file)
    check_exposure(host, key is not None, no_auth)                 # before minutes of model loading
    settings = ServeSettings(max_k=max_k, max_items=max_items, max_body_bytes=max_body_bytes, max_batch=max_batch,
                             threads=threads)
    access = f"API key from {source} required" if key else "no API key (anyone who reaches the port may ask)"

    def ready(rec: Recommender) -> None:
        click.echo(f"serving {rec.describe()['model']} ({rec.num_items} items) from {run_dir} on "
                   f"http://{host}:{port} (docs: /docs); {access}", err=True)

    def stopped() -> None:
        click.echo("stopped: every request in flight was answered", err=True)

    run_server(run_dir, host=host, port=port, settings=settings, torch_threads=torch_threads,
               access_log=access_log, ann=ann, on_ready=ready, api_key=key, no_auth=no_auth, on_stop=stopped)
