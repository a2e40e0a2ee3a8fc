"""The CLI starts without importing torch (commands that do not train or score import it on first use), and the
package's public names still resolve: `seqrec.train` is the training function, not the subpackage."""

import subprocess
import sys


def python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_cli_and_data_commands_do_not_import_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREC_CACHE", str(tmp_path / "cache"))
    log = tmp_path / "log.csv"
    log.write_text("user,item,time\n" + "".join(f"{u},{(u * 7 + t) % 50},{t}\n" for u in range(30) for t in range(8)))
    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from seqrec.cli import cli\n"
            "assert CliRunner().invoke(cli, ['--help']).exit_code == 0\n"
            f"result = CliRunner().invoke(cli, ['data', 'prepare', {str(log)!r}, '--json'])\n"
            "assert result.exit_code == 0, result.output\n"
            "print('torch' in sys.modules, 'polars' in sys.modules, '\"cache_hit\": true' in result.output)\n")
    assert python(code) == "False True False"                   # the first prepare reads (polars), fills the cache
    assert python(code) == "False False True"                   # a cache hit needs neither torch nor polars


def test_public_names_resolve_lazily():
    code = ("import sys, seqrec\n"
            "before = 'torch' in sys.modules\n"
            "from seqrec.train.trainer import Trainer\n"
            "import seqrec.api\n"
            "print(before, seqrec.train is seqrec.api.train, seqrec.Run is seqrec.api.Run,\n"
            "      seqrec.Recommender.__module__, seqrec.SeqrecError.__module__, 'Split' in dir(seqrec))\n")
    assert python(code) == "False True True seqrec.recommend seqrec.errors True"


def test_unknown_attribute_is_an_attribute_error():
    assert python("import seqrec\ntry:\n    seqrec.no_such_name\nexcept AttributeError as e:\n    print(e)") == \
        "module 'seqrec' has no attribute 'no_such_name'"
