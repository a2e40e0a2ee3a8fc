"""The `seqrec` command line: summaries, JSON, errors without tracebacks, help."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from seqrec.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_prepare_json_summary_on_a_written_file(tmp_path, capsys):
    path = tmp_path / "log.csv"
    path.write_text("uid,sku,ts\n" + "".join(f"{u},{i},{u * 10 + i}\n" for u in range(5) for i in range(4)))
    code, out, err = _run(capsys, "data", "prepare", str(path), "--columns", "user=uid,item=sku,time=ts", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["users"], summary["items"], summary["interactions"]) == (5, 4, 20)
    assert summary["split"]["protocol"] == "leave_one_out" and summary["split"]["test_targets"] == 5
    assert summary["cache_hit"] is False
    code, out, _ = _run(capsys, "data", "prepare", str(path), "--columns", "user=uid,item=sku,time=ts", "--json")
    assert json.loads(out)["cache_hit"] is True


def test_prepare_table_and_temporal_split(tmp_path, capsys):
    path = tmp_path / "log.tsv"
    path.write_text("".join(f"{u}\t{i}\t5\t{1_600_000_000 + 3600 * (u + i)}\n" for u in range(6) for i in range(5)))
    code, out, err = _run(capsys, "data", "prepare", str(path), "--columns", "user=0,item=1,rating=2,time=3",
                          "--split", "temporal")
    assert code == 0, err
    assert re.search(r"\binteractions\W+30\b", out) and "temporal" in out and "UTC" in out   # 6 users x 5 items


def test_k_core_and_dedupe_options(tmp_path, capsys):
    path = tmp_path / "log.csv"
    rows = [(1, 1), (1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (3, 9)]
    path.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows))
    code, out, err = _run(capsys, "data", "prepare", str(path), "--dedupe", "--min-user-count", "2",
                          "--min-item-count", "2", "--split", "none", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["duplicates_dropped"] == 1
    assert (summary["users"], summary["items"], summary["interactions"]) == (2, 2, 4)


def test_bad_file_is_one_message_and_exit_1(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("user,item,time\n1,2,3\n1,4,soon\n")
    code, out, err = _run(capsys, "data", "prepare", str(path))
    assert code == 1
    assert err.startswith("error: ") and "bad.csv" in err and "soon" in err and ":3" in err
    assert "Traceback" not in err


def test_usage_error_exit_2(capsys):
    code, _, err = _run(capsys, "data", "prepare", "x.csv", "--format", "xlsx")
    assert code == 2 and "xlsx" in err


def test_help_explains_every_option(capsys):
    code, out, _ = _run(capsys, "data", "prepare", "--help")
    assert code == 0
    for option in ("--format", "--columns", "--separator", "--header", "--min-user-count", "--min-item-count",
                   "--dedupe", "--min-rating", "--split", "--json", "--cache-dir", "--no-cache"):
        assert option in out


def test_train_keys_lists_every_models_hyper_parameters(capsys):
    from seqrec.models import MODELS

    code, out, _ = _run(capsys, "train", "--keys")
    assert code == 0
    keys = {line.split()[0] for line in out.splitlines()}
    assert {"train.lr", "loss.name", "eval.ks", "model.mask_prob", "model.dilations", "model.hidden_size"} <= keys
    for cls in MODELS.values():
        assert {f"model.{key}" for key in cls.config_class.model_fields} <= keys


def test_data_list(capsys):
    code, out, _ = _run(capsys, "data", "list", "--json")
    names = {d["name"] for d in json.loads(out)}
    assert code == 0 and {"ml-1m", "ml-20m", "diginetica"} <= names


def test_console_script_in_a_subprocess_has_no_traceback(tmp_path):
    env = {**os.environ, "SEQREC_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-m", "seqrec.cli", "data", "prepare", str(tmp_path / "missing.csv")],
                            capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 1
    assert "no such file" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_quickstart_end_to_end(capsys):
    code, out, err = _run(capsys, "quickstart", "--epochs", "6")
    assert code == 0, err
    assert "users" in out and "leave_one_out" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("pop ", "sasrec "))}
    header = next(line.split() for line in out.splitlines() if "NDCG@10" in line)
    col = header.index("NDCG@10") + 1                     # + 1: the row label "pop (test)" is two words
    assert float(rows["sasrec"][col]) > 3 * float(rows["pop"][col])
    assert out.count("top-5") == 3


TINY = ["--set", "model.dim=16", "--set", "model.max_len=20", "--set", "train.epochs=2", "--set",
        "train.batch_size=256"]


def test_train_then_evaluate_a_run_directory(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  path: demo\nmodel:\n  name: sasrec\n")
    out_dir = tmp_path / "run"
    code, out, err = _run(capsys, "train", "-c", str(config), *TINY, "--out", str(out_dir), "--quiet")
    assert code == 0, err
    assert "NDCG@10" in out and str(out_dir) in out
    results = json.loads((out_dir / "results.json").read_text())
    code, out, err = _run(capsys, "evaluate", str(out_dir), "--json", "--split", "both")
    assert code == 0, err
    assert json.loads(out)["test"]["NDCG@10"] == pytest.approx(results["test"]["NDCG@10"])
    # another history filter than the run's (none): each target's rank can only improve from none to the
    # 20-item window to the whole history
    mrr = {}
    for exclusion in ("false", "window", "true"):
        code, out, err = _run(capsys, "evaluate", str(out_dir), "--json", "--exclude-history", exclusion)
        assert code == 0, err
        mrr[exclusion] = json.loads(out)["test"]["MRR"]
    assert mrr["false"] == pytest.approx(results["test"]["MRR"])
    assert mrr["false"] < mrr["window"] < mrr["true"]
    # a second train into the same directory without --resume is refused, with --resume it is a no-op
    code, _, err = _run(capsys, "train", "-c", str(config), *TINY, "--out", str(out_dir))
    assert code == 1 and "--resume" in err
    code, out, err = _run(capsys, "train", "--out", str(out_dir), "--resume", "--quiet")
    assert code == 0, err


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "train.learnig_rate=0.1"], "did you mean 'train.lr'"),
    (["--set", "train.lr=-1"], "train.lr: value -1 is not allowed; expected a number > 0"),
    (["--set", "model.name=sasrek"], "did you mean 'sasrec'"),
    (["--set", "model.dim=zero"], "model.dim: value 'zero'"),
    (["--set", "eval.metric=NDCG@7"], "eval.metric: value 'NDCG@7'"),
    (["--set", "trian.lr=1"], "unknown section 'trian'; did you mean 'train'"),
    (["--set", "lr"], "expected SECTION.KEY=VALUE"),
    (["-c", "/nonexistent/config.yaml"], "does not exist"),
])
def test_train_config_errors_are_one_line_messages(capsys, args, message):
    code, _, err = _run(capsys, "train", *args)
    assert code == 1
    assert message in err and "Traceback" not in err


def test_train_yaml_syntax_error_names_the_line(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  lr: 0.1\n  epochs: [1, 2\n")
    code, _, err = _run(capsys, "train", "-c", str(config))
    assert code == 1 and f"{config}:" in err and "invalid YAML" in err


def test_evaluate_refuses_a_checkpoint_carrying_pickled_code(tmp_path, capsys):
    import torch

    config = tmp_path / "c.yaml"
    config.write_text("data:\n  path: demo\n")
    out_dir = tmp_path / "run"
    assert _run(capsys, "train", "-c", str(config), *TINY, "--out", str(out_dir), "--quiet")[0] == 0
    sentinel = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    torch.save({"format": 1, "state_dict": Payload()}, out_dir / "checkpoints" / "best.pt")
    code, _, err = _run(capsys, "evaluate", str(out_dir))
    assert code == 1 and "refused" in err and not sentinel.exists()


@pytest.mark.realdata
def test_prepare_real_ml1m_json(dataset, capsys):
    code, out, err = _run(capsys, "data", "prepare", str(dataset("ml-1m-sasrec/ml-1m.txt")), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["users"], summary["items"], summary["interactions"]) == (6040, 3416, 999_611)
    assert summary["split"]["test_targets"] == 6040


def test_train_without_a_config_says_it_trains_the_demo_default(tmp_path, capsys):
    code, _, err = _run(capsys, "train", *TINY, "--set", "train.epochs=1", "--out", str(tmp_path / "run"), "--quiet")
    assert code == 0 and "no -c CONFIG given: training the built-in default, SASRec on the demo data" in err
    code, _, err = _run(capsys, "train", "--out", str(tmp_path / "run"), "--resume", "--quiet")
    assert code == 0 and "no -c" not in err                                     # a resumed run has its own config
