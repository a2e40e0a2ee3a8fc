"""seqrec: sequential and session-based recommendation.

    data = seqrec.load("ratings.csv", columns={"user": "uid", "item": "sku", "time": "ts"})
    run = seqrec.train(data, model="sasrec", train={"epochs": 50})
    run.results["test"]["NDCG@10"]
    run.recommend(user="u42", k=10)
"""

from seqrec.api import Run, make_config, train
from seqrec.config import RunConfig, load_config
from seqrec.data.interactions import Interactions
from seqrec.data.pipeline import load
from seqrec.data.prepare import PrepareOptions
from seqrec.data.sequences import SequenceData
from seqrec.data.splits import Split, Targets, leave_one_out, temporal
from seqrec.errors import ConfigError, DataError, SeqrecError
from seqrec.recommend import Recommender, RecommendError

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
