"""Full-ranking evaluation: ranks of the targets among all items, metrics over ranks, and reports."""

from __future__ import annotations

from seqrec.evaluate.metrics import DEFAULT_KS, hit_rate, metrics_from_ranks, mrr, ndcg
from seqrec.evaluate.ranking import evaluate, target_ranks
from seqrec.evaluate.report import format_table, to_json

__all__ = [
    "DEFAULT_KS",
    "evaluate",
    "format_table",
    "hit_rate",
    "metrics_from_ranks",
    "mrr",
    "ndcg",
    "target_ranks",
    "to_json",
]
