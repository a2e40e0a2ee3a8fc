"""The run directory's layout: every file name of a run, once.

A run directory (the `--out` of `seqrec train`) holds `config.yaml` (written first), `data.json` (the data's
fingerprint and split), `log.jsonl` (one record per epoch), `checkpoints/` (`last.pt` for resume, `best.pt`),
`curves.png` and `results.json` (written when the run finishes). Imports nothing heavy: the trainer, the
experiments, the CLI and `seqrec.runs` all name the files through `RunDir`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from seqrec.errors import ConfigError

BEST, LAST = "best.pt", "last.pt"


@dataclass(frozen=True)
class RunDir:
    """The files of one run directory."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def data_info(self) -> Path:
        return self.path / "data.json"

    @property
    def log(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    @property
    def curves(self) -> Path:
        return self.path / "curves.png"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, name: str = BEST) -> Path:
        return self.checkpoints / name

    @property
    def exists(self) -> bool:
        """A run was started here (its config is written first)."""
        return self.config.exists()

    @property
    def finished(self) -> bool:
        return self.results.exists()

    def require(self) -> RunDir:
        if not self.exists:
            raise ConfigError(f"{self.path} is not a run directory (no config.yaml); expected the --out folder "
                              "of `seqrec train`")
        return self

    def read_results(self) -> dict:
        return json.loads(self.results.read_text()) if self.finished else {}

    def read_data_info(self) -> dict:
        return json.loads(self.data_info.read_text()) if self.data_info.exists() else {}


