"""`python -m seqrec ...` (and `torchrun -m seqrec train ...`): the `seqrec` command line."""

import sys

from seqrec.cli import main

if __name__ == "__main__":
    sys.exit(main())
