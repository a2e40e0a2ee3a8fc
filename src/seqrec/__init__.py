"""seqrec: sequential and session-based recommendation."""

from seqrec.errors import ConfigError, DataError, SeqrecError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "SeqrecError", "__version__"]
