"""Run bookkeeping: crash-safe file writes, the per-epoch JSONL log, run folders, curve plots, a progress bar.

Everything here is written so that a run killed at any moment (including `kill -9`) leaves files that are either
the previous complete version or the new complete version: whole-file writes go through
`seqrec.fileio.atomic_write`, and the append-only epoch log tolerates a torn last line.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
from os import PathLike
from pathlib import Path
from typing import Any

from seqrec.errors import DataError
from seqrec.fileio import atomic_write

logger = logging.getLogger(__name__)


def write_text(path: str | PathLike[str], text: str) -> Path:
    """Atomically write UTF-8 text to `path` (see `atomic_write`)."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda handle: handle.write(data))


def write_json(path: str | PathLike[str], obj: Any) -> Path:
    """Atomically write `obj` as indented JSON to `path`; raises TypeError if `obj` is not JSON-serialisable."""
    # Serialise before touching the disk so an unserialisable object leaves no file behind.
    return write_text(path, json.dumps(obj, indent=2) + "\n")


class EpochLog:
    """Append-only log of one JSON record per line (one line per epoch), safe against kills.

    Appends are flushed and fsynced. A line torn by a kill mid-write (the last line, without its newline and not
    parseable) is dropped with a warning when reading and removed before the next append.

    Args:
        path: the JSONL file, conventionally `run_dir / "log.jsonl"`; created on the first append.
    """

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        """Write `record` as one JSON line and make it durable."""
        line = (json.dumps(record) + "\n").encode("utf-8")
        if self._tail_is_torn():
            self._rewrite(self.records())
        with open(self.path, "ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def records(self) -> list[dict[str, Any]]:
        """Return every complete record in order ([] if the file does not exist).

        Raises:
            DataError: a line other than a torn last one is not a JSON object.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = raw.split(b"\n")
        # split leaves b"" after a final newline; anything else in the last slot was written without its newline
        last = lines.pop()
        out = [self._parse(line, number) for number, line in enumerate(lines, 1) if line.strip()]
        if last.strip():
            try:
                out.append(self._parse(last, len(lines) + 1))
            except DataError:
                logger.warning("%s: dropping torn last line %d (a write was interrupted)", self.path, len(lines) + 1)
        return out

    def truncate_after(self, epoch: int) -> None:
        """Atomically drop every record whose `"epoch"` is greater than `epoch`.

        Used on resume: records of epochs after the last checkpoint belong to work that is about to be redone.
        Records without an `"epoch"` key are kept.
        """
        kept = [record for record in self.records() if "epoch" not in record or record["epoch"] <= epoch]
        self._rewrite(kept)

    def _parse(self, line: bytes, number: int) -> dict[str, Any]:
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"not a JSON line ({exc})", path=self.path, line=number) from None
        if not isinstance(record, dict):
            raise DataError("not a JSON object", path=self.path, line=number, expected="one JSON object per line")
        return record

    def _tail_is_torn(self) -> bool:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                if handle.tell() == 0:
                    return False
                handle.seek(-1, os.SEEK_END)
                return handle.read(1) != b"\n"
        except FileNotFoundError:
            return False

    def _rewrite(self, records: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(record) + "\n" for record in records)
        write_text(self.path, text)


def peak_memory_mb(device: Any = None) -> float | None:
    """Peak memory so far in MiB: on a CUDA device the most torch allocated there, else the process's peak
    resident set (the OS's figure, so data and libraries count too); None where neither can be read."""
    if device is not None and getattr(device, "type", str(device)).startswith("cuda"):
        import torch

        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    try:
        import resource
    except ImportError:                     # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def make_run_dir(root: str | PathLike[str], name_hint: str) -> Path:
    """Create and return a fresh run folder `root/<YYYYmmdd-HHMMSS>-<name_hint>`.

    If that name is taken (two runs started in the same second), `-2`, `-3`, ... is appended. `mkdir` without
    `exist_ok` makes this safe against concurrent callers. Characters unsafe in file names are replaced by `-`.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    hint = re.sub(r"[^A-Za-z0-9._+@=-]+", "-", name_hint).strip("-.") or "run"
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{hint}"
    for suffix in range(1, 10_000):
        candidate = root / (base if suffix == 1 else f"{base}-{suffix}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"could not find a free run folder name for {base!r} under {root}")


def plot_curves(records: list[dict[str, Any]], path: str | PathLike[str], metric: str = "NDCG@10") -> Path | None:
    """Plot training loss and a validation metric per epoch to a PNG (atomically).

    Args:
        records: epoch records with `"epoch"`, optionally `"loss"` and `"valid": {metric: value}`.
        path: the PNG to write.
        metric: the key inside `record["valid"]` to plot; the best (highest) epoch is marked.

    Returns:
        `path` as a Path, or None when `records` is empty (nothing is written).
    """
    if not records:
        return None
    import io

    figure = curves_figure(records, metric)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    data = buffer.getvalue()
    return atomic_write(path, lambda handle: handle.write(data))


def curves_figure(records: list[dict[str, Any]], metric: str = "NDCG@10") -> Any:
    """The matplotlib Figure of `plot_curves` (loss and validation metric by epoch, whole-epoch ticks)."""
    # Imported here so merely importing seqrec never loads matplotlib; Figure + FigureCanvasAgg use no pyplot
    # global state and do not switch the process-wide backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    losses = [(r["epoch"], float(r["loss"])) for r in records if r.get("loss") is not None]
    valid = [(r["epoch"], float(r["valid"][metric])) for r in records
             if isinstance(r.get("valid"), dict) and r["valid"].get(metric) is not None]

    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, metric_axes = figure.subplots(1, 2)
    _panel(loss_axes, losses, "Training loss", "loss", best=None)
    finite = [point for point in valid if math.isfinite(point[1])]
    best = max(finite, key=lambda point: point[1]) if finite else None
    _panel(metric_axes, valid, f"Validation {metric}", metric, best=best)
    return figure


def _panel(axes: Any, points: list[tuple[int, float]], title: str, ylabel: str,
           best: tuple[int, float] | None) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))                     # epochs are whole numbers
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    if not points:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
        return
    xs, ys = zip(*points, strict=True)
    axes.plot(xs, ys, marker="o", markersize=3)
    if best is not None:
        axes.axvline(best[0], color="tab:red", linestyle="--", linewidth=1)
        axes.scatter([best[0]], [best[1]], color="tab:red", zorder=3, label=f"best: epoch {best[0]} ({best[1]:.4f})")
        axes.legend(loc="best")


class Progress:
    """Progress display for one epoch, also measuring time, throughput and mean loss.

    Shows a `rich` progress bar on stderr with the running mean loss and sequences/s, but only when `enabled` and
    stderr is a terminal; otherwise it prints nothing at all (tests, CI logs, redirected output) and only
    measures. Updates are forwarded to rich at most ~10 times a second so per-batch overhead stays negligible.

    Args:
        total_batches: batches in the epoch (the bar's length).
        description: label shown left of the bar.
        enabled: False turns the display off regardless of the terminal.
    """

    _PUSH_INTERVAL = 0.1

    def __init__(self, total_batches: int, description: str, enabled: bool = True) -> None:
        self.total_batches = total_batches
        self.description = description
        self.enabled = enabled and sys.stderr.isatty()
        self.batches = 0
        self.sequences = 0
        self._loss_sum = 0.0
        self._loss_count = 0
        self._start: float | None = None
        self._end: float | None = None
        self._pending = 0
        self._last_push = 0.0
        self._rich: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        self._start = time.perf_counter()
        if self.enabled:
            self._rich = _make_rich_progress()
            self._rich.start()
            self._task = self._rich.add_task(self.description, total=self.total_batches, loss="-", rate="-")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._end = time.perf_counter()
        if self._rich is not None:
            self._push()
            self._rich.stop()
            self._rich = None

    def update(self, advance: int = 1, loss: float | None = None, sequences: int = 0) -> None:
        """Record `advance` finished batches, their `loss` (batch mean) and how many `sequences` they held."""
        if self._start is None:  # used without `with`: start the clock at the first update
            self._start = time.perf_counter()
        self.batches += advance
        self.sequences += sequences
        if loss is not None:
            self._loss_sum += float(loss)
            self._loss_count += 1
        if self._rich is not None:
            self._pending += advance
            now = time.perf_counter()
            if now - self._last_push >= self._PUSH_INTERVAL:
                self._last_push = now
                self._push()

    @property
    def seconds(self) -> float:
        """Seconds since the epoch started (frozen when the `with` block ends)."""
        if self._start is None:
            return 0.0
        return (self._end if self._end is not None else time.perf_counter()) - self._start

    @property
    def sequences_per_second(self) -> float:
        """Throughput in sequences per second (0.0 before any time has passed)."""
        seconds = self.seconds
        return self.sequences / seconds if seconds > 0 else 0.0

    @property
    def mean_loss(self) -> float:
        """Mean of the per-batch losses passed to `update` (NaN if none was)."""
        return self._loss_sum / self._loss_count if self._loss_count else math.nan

    def _push(self) -> None:
        loss = f"{self.mean_loss:.4f}" if self._loss_count else "-"
        self._rich.update(self._task, advance=self._pending, loss=loss, rate=f"{self.sequences_per_second:,.0f}")
        self._pending = 0


def _make_rich_progress() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.progress import Progress as RichProgress

    return RichProgress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[rate]} seq/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        refresh_per_second=4,
    )
