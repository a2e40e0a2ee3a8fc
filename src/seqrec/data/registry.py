"""Registry of public datasets that `seqrec data download` knows how to fetch.

Each entry names the official URL, the checksum its publisher gives (or none), the kind of archive, the files
that matter inside it and how seqrec's readers should read the main interaction file (`files[0]`).

Where every URL and checksum comes from is recorded beside the entry. A checksum is never made up: when no
published checksum could be found, `checksum` is `""` and `seqrec.data.download.download` refuses the entry
unless the caller passes one explicitly (`checksum=` / `--checksum`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from seqrec.errors import ConfigError

ARCHIVE_KINDS = ("zip", "gz", "none")
CHECKSUM_ALGORITHMS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}


@dataclass(frozen=True)
class DatasetSpec:
    """One public dataset.

    Attributes:
        name: short name used on the command line (`ml-1m`).
        url: official download URL.
        checksum: `"md5:<hex>"` or `"sha256:<hex>"` as the publisher gives it, or `""` when none is published.
        archive: `"zip"`, `"gz"` or `"none"` (the file is used as downloaded).
        files: paths inside the unpacked folder that matter; `files[0]` is the main interaction file.
        format: seqrec reader format of `files[0]`.
        columns: column mapping for the reader (canonical name -> file column name or 0-based position), or None.
        description, homepage, licence: for `seqrec data list`.
        size: size of the download in bytes, when known (used for the progress bar if the server sends none).
        filename: name of the downloaded file; defaults to the last part of the URL path. Needed where the URL
            does not end with the file name (Google Drive), and used to build `mirror` URLs.
        separator: field separator of `files[0]` for the reader, when it is not the format's default.
        header: whether `files[0]` starts with a header line, when known.
    """

    name: str
    url: str
    checksum: str
    archive: str
    files: tuple[str, ...]
    format: str
    columns: dict | None = field(hash=False)
    description: str
    homepage: str
    licence: str
    size: int | None = None
    filename: str = ""
    separator: str | None = None
    header: bool | None = None

    @property
    def file_name(self) -> str:
        """The name of the downloaded file (`ml-1m.zip`)."""
        return self.filename or PurePosixPath(urlsplit(self.url).path).name

    @property
    def main_file(self) -> str:
        """Path of the main interaction file, relative to the unpacked folder."""
        return self.files[0]

    def read_options(self) -> dict:
        """Keyword arguments for `seqrec.load` to read `main_file`."""
        options: dict = {"format": self.format, "columns": dict(self.columns) if self.columns else None}
        if self.separator is not None:
            options["separator"] = self.separator
        if self.header is not None:
            options["header"] = self.header
        return options


_MOVIELENS_LICENCE = ("GroupLens usage licence: research use, no redistribution without permission, cite "
                      "Harper & Konstan, ACM TiiS 2015 (see the README in the archive)")
_MOVIELENS_BASE = "https://files.grouplens.org/datasets/movielens/"

# MovieLens: URLs are GroupLens's own (files.grouplens.org/datasets/movielens/<name>.zip). The md5 checksums are
# those GroupLens publishes beside each archive in `<name>.zip.md5` (`MD5 (ml-1m.zip) = c4d9...`); they are quoted
# identically, with the sidecar named as their source, in many public repositories, e.g.
# eli-osherovich/papers_with_code datasets/movielens/dl_config.py (100k, 1m, 10m, 20m, 25m), verify scripts that
# `curl -O .../ml-1m.zip.md5`, and dataset cards quoting "official MD5 line: MD5 (ml-20m.zip) = cd24...".
# Sizes (bytes) are those public download receipts record for the same archives; ml-1m's was not found.
_SPECS = [
    DatasetSpec(
        name="ml-100k",
        url=_MOVIELENS_BASE + "ml-100k.zip",
        checksum="md5:0e33842e24a9c977be4e0107933c0723",  # GroupLens ml-100k.zip.md5
        archive="zip",
        files=("ml-100k/u.data", "ml-100k/u.item", "ml-100k/u.user"),
        format="tsv",
        columns={"user": 0, "item": 1, "rating": 2, "time": 3},
        header=False,
        separator="\t",
        description="MovieLens 100K: 100,000 ratings (1-5) from 943 users on 1,682 movies, 1997-1998.",
        homepage="https://grouplens.org/datasets/movielens/100k/",
        licence=_MOVIELENS_LICENCE,
        size=4_924_029,
    ),
    DatasetSpec(
        name="ml-1m",
        url=_MOVIELENS_BASE + "ml-1m.zip",
        checksum="md5:c4d9eecfca2ab87c1945afe126590906",  # GroupLens ml-1m.zip.md5
        archive="zip",
        files=("ml-1m/ratings.dat", "ml-1m/movies.dat", "ml-1m/users.dat"),
        format="dat",
        columns={"user": 0, "item": 1, "rating": 2, "time": 3},
        header=False,
        separator="::",
        description="MovieLens 1M: 1,000,209 ratings (1-5) from 6,040 users on 3,706 movies, 2000-2003. "
                    "The HSTU / SASRec full-ranking benchmark.",
        homepage="https://grouplens.org/datasets/movielens/1m/",
        licence=_MOVIELENS_LICENCE,
    ),
    DatasetSpec(
        name="ml-10m",
        url=_MOVIELENS_BASE + "ml-10m.zip",
        checksum="md5:ce571fd55effeba0271552578f2648bd",  # GroupLens ml-10m.zip.md5
        archive="zip",
        files=("ml-10M100K/ratings.dat", "ml-10M100K/movies.dat", "ml-10M100K/tags.dat"),
        format="dat",
        columns={"user": 0, "item": 1, "rating": 2, "time": 3},
        header=False,
        separator="::",
        description="MovieLens 10M: 10,000,054 ratings (0.5-5) from 71,567 users on 10,681 movies. "
                    "Unpacks to the folder `ml-10M100K`.",
        homepage="https://grouplens.org/datasets/movielens/10m/",
        licence=_MOVIELENS_LICENCE,
        size=65_566_137,
    ),
    DatasetSpec(
        name="ml-20m",
        url=_MOVIELENS_BASE + "ml-20m.zip",
        checksum="md5:cd245b17a1ae2cc31bb14903e1204af3",  # GroupLens ml-20m.zip.md5
        archive="zip",
        files=("ml-20m/ratings.csv", "ml-20m/movies.csv", "ml-20m/tags.csv"),
        format="csv",
        columns={"user": "userId", "item": "movieId", "rating": "rating", "time": "timestamp"},
        header=True,
        separator=",",
        description="MovieLens 20M: 20,000,263 ratings (0.5-5) from 138,493 users on 27,278 movies, 1995-2015.",
        homepage="https://grouplens.org/datasets/movielens/20m/",
        licence=_MOVIELENS_LICENCE,
        size=198_702_078,
    ),
    DatasetSpec(
        name="ml-25m",
        url=_MOVIELENS_BASE + "ml-25m.zip",
        checksum="md5:6b51fb2759a8657d3bfcbfc42b592ada",  # GroupLens ml-25m.zip.md5
        archive="zip",
        files=("ml-25m/ratings.csv", "ml-25m/movies.csv", "ml-25m/tags.csv"),
        format="csv",
        columns={"user": "userId", "item": "movieId", "rating": "rating", "time": "timestamp"},
        header=True,
        separator=",",
        description="MovieLens 25M: 25,000,095 ratings (0.5-5) from 162,541 users on 62,423 movies, 1995-2019.",
        homepage="https://grouplens.org/datasets/movielens/25m/",
        licence=_MOVIELENS_LICENCE,
        size=261_978_986,
    ),
    # Amazon Beauty (McAuley et al., 2014 edition), ratings only: `user,item,rating,unix time`, no header line.
    # The file used by the SASRec / BERT4Rec line of work; the URL is the SNAP mirror the UCSD page
    # (jmcauley.ucsd.edu/data/amazon/links.html) links to, as used e.g. by elloza/LlamaRec DATASET.md
    # ("wget http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/ratings_Beauty.csv").
    # No checksum is published by the authors, and none was found in public code: checksum="" (pass one).
    DatasetSpec(
        name="amazon-beauty",
        url="https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/ratings_Beauty.csv",
        checksum="",
        archive="none",
        files=("ratings_Beauty.csv",),
        format="csv",
        columns={"user": 0, "item": 1, "rating": 2, "time": 3},
        header=False,
        separator=",",
        description="Amazon Beauty (McAuley et al. 2014), ratings only: ~2.0M ratings from ~1.2M users on "
                    "~249K products, 1996-2014. SASRec/BERT4Rec apply a 5-core filter.",
        homepage="https://jmcauley.ucsd.edu/data/amazon/",
        licence="research use; cite McAuley et al., SIGIR 2015 and He & McAuley, WWW 2016",
    ),
    # Diginetica (CIKM Cup 2016, track 2). SR-GNN's README points at http://cikm2016.cs.iupui.edu/cikm-cup, whose
    # download is the Google Drive file `dataset-train-diginetica.zip`, id 0B7XZSACQf0KdenRmMk8yVUU5LWc (the id
    # used by public SR-GNN/NARM preprocessing scripts: `gdown.pl https://drive.google.com/open?id=0B7X...
    # dataset-train-diginetica.zip`). The zip holds train-item-views.csv etc. at its top level, `;`-separated
    # with a header `sessionId;userId;itemId;timeframe;eventdate` (`timeframe` orders clicks within a session).
    # No checksum is published: checksum="" (pass one). Google Drive answers large files with an HTML
    # confirmation page, so a direct download may fail; then download it in a browser and use `mirror=`.
    DatasetSpec(
        name="diginetica",
        url="https://drive.google.com/uc?export=download&id=0B7XZSACQf0KdenRmMk8yVUU5LWc",
        checksum="",
        archive="zip",
        files=("train-item-views.csv",),
        format="sessions",
        columns={"session": "sessionId", "user": "userId", "item": "itemId", "time": "eventdate"},
        header=True,
        separator=";",
        description="Diginetica (CIKM Cup 2016): item views in ~600K e-commerce sessions, 2016. The SR-GNN / "
                    "GC-SAN / LESSR session-based benchmark (train-item-views.csv).",
        homepage="https://competitions.codalab.org/competitions/11161",
        licence="CIKM Cup 2016 terms: research use; cite the CIKM Cup 2016 challenge",
        filename="dataset-train-diginetica.zip",
    ),
]

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}


def list_datasets() -> list[DatasetSpec]:
    """All registered datasets, in registry order."""
    return list(DATASETS.values())


def get_dataset(name: str) -> DatasetSpec:
    """The registered dataset called `name` (case-insensitive).

    Raises:
        seqrec.ConfigError: no dataset has that name; the message suggests the closest one.
    """
    key = str(name).strip().lower()
    if key in DATASETS:
        return DATASETS[key]
    known = ", ".join(DATASETS)
    close = difflib.get_close_matches(key, list(DATASETS), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown dataset {name!r}{hint} known: {known}")


def parse_checksum(checksum: str) -> tuple[str, str]:
    """Split `"md5:<hex>"` into `("md5", "<hex>")`; a bare hex string of md5/sha256 length is accepted too.

    Raises:
        seqrec.ConfigError: the value is not of that form.
    """
    text = str(checksum).strip()
    algorithm, sep, digest = text.partition(":")
    if not sep:
        algorithm, digest = {32: "md5", 64: "sha256"}.get(len(text), ""), text
    algorithm, digest = algorithm.strip().lower(), digest.strip().lower()
    length = CHECKSUM_ALGORITHMS.get(algorithm)
    if length is None or len(digest) != length or any(c not in "0123456789abcdef" for c in digest):
        allowed = ", ".join(f"{a}:<{n} hex digits>" for a, n in CHECKSUM_ALGORITHMS.items())
        raise ConfigError(f"malformed checksum {checksum!r}; expected one of {allowed}")
    return algorithm, digest
