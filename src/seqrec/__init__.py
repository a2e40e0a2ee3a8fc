"""seqrec: sequential and session-based recommendation.

    data = seqrec.load("ratings.csv", columns={"user": "uid", "item": "sku", "time": "ts"})
    split = seqrec.leave_one_out(data)
"""

from seqrec.data.interactions import Interactions
from seqrec.data.pipeline import load
from seqrec.data.prepare import PrepareOptions
from seqrec.data.sequences import SequenceData
from seqrec.data.splits import Split, Targets, leave_one_out, temporal
from seqrec.errors import ConfigError, DataError, SeqrecError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "Interactions",
    "PrepareOptions",
    "SequenceData",
    "SeqrecError",
    "Split",
    "Targets",
    "__version__",
    "leave_one_out",
    "load",
    "temporal",
]
