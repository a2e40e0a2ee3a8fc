"""seqrec: sequential and session-based recommendation.

    data = seqrec.load("ratings.csv", columns={"user": "uid", "item": "sku", "time": "ts"})
    run = seqrec.train(data, model="sasrec", train={"epochs": 50})
    run.results["test"]["NDCG@10"]
    run.recommend(user="u42", k=10)
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

# The public names, imported on first use (PEP 562): `import seqrec` (and so the CLI's start-up) does not
# import torch; `seqrec.train` etc. import their module when first touched.
_EXPORTS = {
    "Run": "seqrec.api", "make_config": "seqrec.api",
    "RunConfig": "seqrec.config", "load_config": "seqrec.config",
    "Interactions": "seqrec.data.interactions",
    "load": "seqrec.data.pipeline",
    "PrepareOptions": "seqrec.data.prepare",
    "SequenceData": "seqrec.data.sequences",
    "Split": "seqrec.data.splits", "Targets": "seqrec.data.splits", "leave_one_out": "seqrec.data.splits",
    "temporal": "seqrec.data.splits",
    "ConfigError": "seqrec.errors", "DataError": "seqrec.errors", "SeqrecError": "seqrec.errors",
    "Recommender": "seqrec.recommend", "RecommendError": "seqrec.recommend",
}

if TYPE_CHECKING:
    from seqrec.api import Run, make_config, train
    from seqrec.config import RunConfig, load_config
    from seqrec.data.interactions import Interactions
    from seqrec.data.pipeline import load
    from seqrec.data.prepare import PrepareOptions
    from seqrec.data.sequences import SequenceData
    from seqrec.data.splits import Split, Targets, leave_one_out, temporal
    from seqrec.errors import ConfigError, DataError, SeqrecError
    from seqrec.recommend import Recommender, RecommendError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:                           # a submodule used as an attribute: `seqrec.api.train(...)`
        if name.startswith("_"):
            raise AttributeError(f"module 'seqrec' has no attribute {name!r}")
        try:
            return importlib.import_module(f"seqrec.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"seqrec.{name}":
                raise
            raise AttributeError(f"module 'seqrec' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value                      # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, "train"])


class _Package(types.ModuleType):
    """`seqrec.train` is the function `seqrec.api.train`, though `seqrec.train` is also the training subpackage:
    the import system binds a subpackage to its parent's attribute when it is first imported, and this setter
    ignores that binding (the subpackage stays importable: `from seqrec.train.trainer import Trainer`)."""

    @property
    def train(self) -> Callable[..., Run]:
        from seqrec.api import train

        return train

    @train.setter
    def train(self, value: object) -> None:
        if not isinstance(value, types.ModuleType):
            raise AttributeError("seqrec.train is the training function; it cannot be replaced")


sys.modules[__name__].__class__ = _Package


__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "Interactions",
    "PrepareOptions",
    "RecommendError",
    "Recommender",
    "Run",
    "RunConfig",
    "SequenceData",
    "SeqrecError",
    "Split",
    "Targets",
    "__version__",
    "leave_one_out",
    "load",
    "load_config",
    "make_config",
    "temporal",
    "train",
]
