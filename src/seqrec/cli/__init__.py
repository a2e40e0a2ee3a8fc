"""The `seqrec` command line. Each subcommand is a thin shell over one library call.

Errors a user can cause (bad files, bad options) print one message on stderr and exit with status 1, without
a traceback; usage errors exit with status 2 (click's convention).

The commands live in `app` (the group and shared output), `data`, `training`, `experiments` and `recommending`;
importing this package registers them all. `python -m seqrec.cli` and `python -m seqrec` run `main`.
"""

from __future__ import annotations

import errno

import click

from seqrec.cli import data, experiments, recommending, training  # noqa: F401 - registers the commands
from seqrec.cli.app import cli
from seqrec.errors import SeqrecError

__all__ = ["cli", "main"]


_RESOURCE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.ENAMETOOLONG, errno.EIO}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `seqrec` console script."""
    try:
        cli.main(args=argv, prog_name="seqrec", standalone_mode=False)
    except SeqrecError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except OSError as exc:
        if exc.errno not in _RESOURCE_ERRORS:
            raise
        # a full, read-only or forbidden disk: every write is atomic, so what was there is intact
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"error: {where}{exc.strerror or exc} (nothing written there was left half-done)", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0
