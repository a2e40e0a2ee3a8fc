"""The input formats, named once (no imports: the CLI reads them at start-up).

`FORMATS` are what `seqrec.data.readers.read_interactions` reads (`seqrec data prepare --format`); a run's
`data.format` also takes the `SESSION_FORMATS`, raw session logs read by `seqrec.data.sessions`.
"""

FORMATS = ("dat", "csv", "tsv", "parquet", "inter", "pairs", "sequences", "sessions")
SESSION_FORMATS = ("diginetica",)          # raw CIKM Cup 2016 train-item-views.csv, the session protocol
