"""Item titles for recommendations: joining the titles of the original data (read by
`seqrec.data.sidefiles.read_titles`) to a run's item ids, directly or through the map from a preprocessed copy's
item ids to the original ones (`read_item_map`). User-id lists are `seqrec.data.sidefiles.read_user_ids`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from seqrec.config import DataConfig
from seqrec.errors import DataError, SeqrecError
from seqrec.queries import plain_value

if TYPE_CHECKING:
    from seqrec.config import RunConfig
    from seqrec.data.sequences import SequenceData


class RunItems(Protocol):
    """What `item_titles` reads of a run's `Recommender`: its config (None without one) and its data."""

    @property
    def config(self) -> RunConfig | None: ...

    @property
    def data(self) -> SequenceData: ...


def read_titles(path: str | Path) -> dict[str, str]:
    """Item id (as text) -> title: `seqrec.data.sidefiles.read_titles`, imported on first use (it reads with polars,
    which answering recommendations does not need)."""
    from seqrec.data import sidefiles

    return sidefiles.read_titles(path)


def read_user_ids(path: str | Path) -> list:
    """User ids from a file: `seqrec.data.sidefiles.read_user_ids`, imported on first use (polars)."""
    from seqrec.data import sidefiles

    return sidefiles.read_user_ids(path)


# formats of preprocessed benchmark copies (SASRec's `user item` pairs, S3-Rec's sequences, SR-GNN's sessions):
# their item ids are the preprocessing's renumbering 1..N, not the ids of the original data's metadata
RENUMBERED_FORMATS = ("pairs", "sequences", "sessions")
IDENTITY = "identity"


def read_item_map(path: str | Path) -> dict[str, str]:
    """Run item id (text) -> original item id (text), from `run_id original_id` lines (blank-, tab- or
    comma-separated), such as `ml-1m-sasrec/sas_to_original_items.txt`; DataError naming the bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read the item id map ({type(error).__name__})", path=path) from None
    mapping: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataError("expected 'run_id original_id'", path=path, line=number, value=line)
        if parts[0] in mapping and mapping[parts[0]] != parts[1]:
            raise DataError(f"run item id {parts[0]} is mapped twice ({mapping[parts[0]]} and {parts[1]})",
                            path=path, line=number)
        mapping[parts[0]] = parts[1]
    if not mapping:
        raise DataError("the item id map is empty", path=path, expected="'run_id original_id' lines")
    return mapping


def find_item_map(data_path: str | Path) -> Path | None:
    """The item id map published beside a preprocessed data file (`*_to_original_items.txt`), if exactly one."""
    folder = Path(data_path).parent
    found = sorted(folder.glob("*to_original_items*")) if folder.is_dir() else []
    return found[0] if len(found) == 1 else None


def item_titles(rec: RunItems, titles: str | Path, item_map: str | Path | None = None) -> tuple[dict, str]:
    """(run item id as text -> title, a note saying how they were joined) for the items of `rec`.

    Titles are keyed by the ids of the original data (`read_titles`); they are joined through the ids the run
    was trained on:
    - `item_map`: a `run_id original_id` file (`read_item_map`), or "identity" when the run's ids are the
      metadata's;
    - else, a `*_to_original_items.txt` map beside the run's data file (the SASRec ML-1M copy has one);
    - else, a run trained on a file of raw ids (csv, tsv, dat, inter, parquet) joins them as they are;
    - else (a preprocessed copy whose ids are renumbered: pairs, sequences, sessions; or a run without its
      config) a DataError: joining would show other items' titles.
    A join that finds no title for any of the run's items is an error too (the ids cannot be the same).
    """
    names = read_titles(titles)
    data = rec.config.data if rec.config is not None else None
    if item_map is None and data is not None and data.path != "demo":
        item_map = find_item_map(data.path)
    if item_map is not None and str(item_map) != IDENTITY:
        mapping = read_item_map(item_map)
        how = f"titles joined through the item id map {item_map}"
        joined = {run_id: names[original] for run_id, original in mapping.items() if original in names}
    else:
        how = "titles joined on the run's own item ids"
        if item_map is None:
            _check_raw_ids(data, titles)
        joined = names
    run_ids = [str(plain_value(i)) for i in rec.data.item_vocab.raw]
    covered = sum(i in joined for i in run_ids)
    if covered == 0:
        raise DataError(f"none of the run's {len(run_ids)} item ids has a title ({how}); the metadata's ids are "
                        "not the run's", path=titles)
    return joined, f"{how}: {covered} of {len(run_ids)} items have one"


def _check_raw_ids(data: DataConfig | None, titles: str | Path) -> None:
    """Refuse to join titles on the ids of a run whose ids may be a preprocessing's renumbering."""
    if data is None:
        raise DataError("this recommender has no run config, so which ids it was trained on is unknown; give "
                        "item_map (a 'run_id original_id' file, or 'identity')", path=titles)
    if data.path == "demo":
        return
    fmt = data.format
    if fmt is None:
        from seqrec.data.readers import detect_format

        try:
            fmt = detect_format(data.path)
        except SeqrecError:
            fmt = None
    if fmt is None or fmt in RENUMBERED_FORMATS:
        kind = f"a '{fmt}' file" if fmt else "a file whose format cannot be told"
        raise DataError(f"the run was trained on {data.path}, {kind}, whose item ids are usually a preprocessing's "
                        "renumbering, not the ids of the metadata; no '*_to_original_items.txt' map is beside it. "
                        "Give --item-map FILE ('run_id original_id' lines), or --item-map identity if the ids "
                        "are the metadata's", path=titles)


__all__ = ["IDENTITY", "RENUMBERED_FORMATS", "find_item_map", "item_titles", "read_item_map", "read_titles",
           "read_user_ids"]
