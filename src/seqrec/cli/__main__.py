"""`python -m seqrec.cli ...`: the `seqrec` command line."""

import sys

from seqrec.cli import main

if __name__ == "__main__":
    sys.exit(main())
