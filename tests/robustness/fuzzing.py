"""Property-based fuzzing (hypothesis): generated inputs into the readers, the config loader, the HTTP service
and `Recommender`. Each property: accepted with the right answer (against a simple reference where there is
one), or refused with a `SeqrecError` / a 4xx JSON error naming the problem; never another exception, a 5xx, a
hang or a silent change of meaning.

Case counts are set per test with `fuzz(n)`; `SEQREC_FUZZ_SCALE=10` multiplies them for a longer campaign, and
`pytest --hypothesis-show-statistics` prints how many ran.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = float(os.environ.get("SEQREC_FUZZ_SCALE", "1"))


def fuzz(examples: int):
    """hypothesis settings for `examples` cases (times SEQREC_FUZZ_SCALE), no per-case deadline (loaded CI
    machines), derandomized unless SEQREC_FUZZ_SEED asks for a fresh random campaign."""
    seed = os.environ.get("SEQREC_FUZZ_SEED")
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, derandomize=seed is None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large], database=None)
