"""Models, registered by name in one explicit table."""

from __future__ import annotations

import difflib

from seqrec.errors import ConfigError
from seqrec.models.base import ModelConfig, SequentialRecommender
from seqrec.models.bert4rec import BERT4Rec
from seqrec.models.gru4rec import GRU4Rec
from seqrec.models.hstu import HSTU
from seqrec.models.lessr import LESSR
from seqrec.models.nextitnet import NextItNet
from seqrec.models.pop import Pop
from seqrec.models.sasrec import SASRec
from seqrec.models.srgnn import GCSAN, SRGNN

MODELS: dict[str, type[SequentialRecommender]] = {
    cls.name: cls for cls in (Pop, SASRec, GRU4Rec, BERT4Rec, NextItNet, HSTU, SRGNN, GCSAN, LESSR)}


def get_model_class(name: str) -> type[SequentialRecommender]:
    """The model class registered as `name`; ConfigError with the closest name otherwise."""
    key = str(name).strip().lower()
    if key in MODELS:
        return MODELS[key]
    close = difflib.get_close_matches(key, MODELS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown model {name!r}{hint} known: {', '.join(sorted(MODELS))}")


def build_model(name: str, num_items: int, params: dict | ModelConfig | None = None) -> SequentialRecommender:
    """Build model `name` for `num_items` items from its hyper-parameters (a dict is validated)."""
    cls = get_model_class(name)
    config = params if isinstance(params, cls.config_class) else cls.config_class(**dict(params or {}))
    return cls(config, num_items)


__all__ = ["MODELS", "ModelConfig", "SequentialRecommender", "build_model", "get_model_class"]
