"""Shape glossary used in comments and docstrings across seqrec.

    B   batch size (rows of a batch)
    L   sequence length (max_len; padded with item id 0)
    D   hidden size (item embedding size)
    N   number of items: real ids are 1..N, 0 is padding, N + 1 the mask token where a model needs one
    M   number of scored positions in a batch (positions with a target)
    K   top-k cut-off, or number of negatives per position
    C   items in one chunk of the catalogue during ranking
    H   attention heads
"""
