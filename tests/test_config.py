"""Run configuration: defaults, shipped configs, overrides, round trips, hashes and every error's message."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from seqrec.config import (
    ModelSection,
    RunConfig,
    config_from_dict,
    config_hash,
    config_to_dict,
    describe_keys,
    dump_config,
    load_config,
)
from seqrec.data.prepare import PrepareOptions
from seqrec.errors import ConfigError
from seqrec.models.pop import PopConfig
from seqrec.models.sasrec import SASRecConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHIPPED = ("demo_sasrec.yaml", "ml1m_pop.yaml", "ml1m_sasrec.yaml", "ml1m_gru4rec.yaml", "ml1m_bert4rec.yaml",
           "ml1m_nextitnet.yaml", "ml1m_sasrec_sampled.yaml", "ml1m_hstu.yaml", "ml1m_hstu_large.yaml",
           "ml1m_hstu_large_mol.yaml", "diginetica_srgnn.yaml", "diginetica_gcsan.yaml", "diginetica_lessr.yaml",
           "yoochoose64_srgnn.yaml", "yoochoose64_lessr.yaml",
           "yoochoose64_gcsan.yaml", "ml100k_hstu.yaml", "ml1m_srgnn.yaml", "ml1m_gcsan.yaml", "ml1m_lessr.yaml",
           "ml100k_sasrec.yaml")


def _error(path=None, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return str(info.value)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------- defaults

def test_defaults_load():
    config = load_config()
    assert config == RunConfig()
    assert (config.model.name, type(config.model.params)) == ("sasrec", SASRecConfig)
    assert config.model.params == SASRecConfig()
    assert (config.data.path, config.data.cache, config.split.protocol) == ("demo", True, "leave_one_out")
    assert (config.loss.name, config.loss.num_negatives, config.loss.negatives) == ("ce", 1, "uniform")
    train = config.train
    assert (train.optimizer, train.lr, train.clip_norm, train.epochs, train.batch_size, train.patience) == (
        "adam", 1e-3, 5.0, 200, 128, 10)
    assert (train.device, train.align, train.seed) == ("cpu", "right", 42)
    assert (config.eval.ks, config.eval.metric, config.eval.batch_size) == ([1, 5, 10, 20, 50, 100], "NDCG@10", 256)


def test_data_defaults_are_the_prepare_defaults():
    data = RunConfig().data
    assert {key: getattr(data, key) for key in asdict(PrepareOptions())} == asdict(PrepareOptions())


def test_an_empty_file_and_empty_sections_mean_defaults(tmp_path):
    assert load_config(_write(tmp_path, "")) == RunConfig()
    assert load_config(_write(tmp_path, "train:\n# lr: 0.1\neval:\n")) == RunConfig()


def test_sections_are_frozen():
    config = RunConfig()
    with pytest.raises(Exception, match="frozen"):
        config.train.lr = 0.5  # type: ignore[misc]


# --------------------------------------------------------------------------------------------- shipped configs

def test_every_shipped_config_is_tested():
    assert sorted(path.name for path in CONFIGS.glob("*.yaml")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_validate_and_document_themselves(name, monkeypatch, tmp_path):
    monkeypatch.setenv("SEQREC_DATA", str(tmp_path))
    path = CONFIGS / name
    config = load_config(path)
    header = path.read_text(encoding="utf-8").split("\n\n")[0]
    assert f"seqrec train -c configs/{name}" in header
    if name.startswith(("diginetica", "yoochoose")):
        folder = "diginetica-srgnn" if name.startswith("diginetica") else "yoochoose1_64-srgnn"
        assert config.data.path == f"{tmp_path}/{folder}/train_sessions.txt"
        assert config.data.test_path == f"{tmp_path}/{folder}/test_sessions.txt"
        assert (config.split.protocol, config.eval.ks, config.eval.metric) == ("session", [10, 20], "MRR@20")
        assert not config.eval.exclude_history
        assert ("50.73" in header and "17.59" in header) or ("70.57" in header and "30.94" in header)
        return
    if name == "ml100k_sasrec.yaml":                               # seqrec tune's example and baseline
        assert config.data.path == f"{tmp_path}/ml-100k/u.data"
        assert (config.model.name, config.split.protocol, config.eval.exclude_history) == ("sasrec", "leave_one_out",
                                                                                           True)
        assert "benchmarks/bench_tune.py" in header and "configs/spaces/sasrec.yaml" in header
        return
    if name.startswith("ml100k"):                                  # the time-bias comparison, no paper figure
        assert config.data.path == f"{tmp_path}/ml-100k/u.data"
        assert (config.model.name, config.split.protocol, config.eval.exclude_history) == ("hstu", "leave_one_out",
                                                                                           True)
        assert "benchmarks/bench_time_bias.py" in header
        return
    assert "0.3152" in header and "0.1821" in header and "0.3003" in header and "0.1726" in header
    if name.startswith("ml1m"):
        assert config.data.path == f"{tmp_path}/ml-1m-sasrec/ml-1m.txt"
        assert (config.data.format, config.split.protocol) == ("pairs", "leave_one_out")
        assert config.eval.exclude_history and config.eval.ks == [1, 5, 10, 20, 50, 100]
        assert config.eval.metric == "NDCG@10"


def test_ml1m_sasrec_is_the_literature_protocol(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQREC_DATA", str(tmp_path))
    config = load_config(CONFIGS / "ml1m_sasrec.yaml")
    assert config.model.params == SASRecConfig(dim=64, num_blocks=2, num_heads=1, dropout=0.1, max_len=200,
                                               block="sasrec", activation="relu", positions="from_start",
                                               qkv_init="xavier", norm_eps=1e-8)
    assert (config.loss.name, config.train.optimizer, config.train.lr) == ("ce", "adam", 1e-3)
    assert config.train.clip_norm is None                                # K&V's SASRec+ recipe
    assert (config.train.batch_size, config.train.epochs, config.train.patience) == (128, 200, 10)
    pop = load_config(CONFIGS / "ml1m_pop.yaml")
    assert (pop.model.name, pop.model.params, pop.data) == ("pop", PopConfig(), config.data)


def test_demo_sasrec_is_small_and_fast():
    config = load_config(CONFIGS / "demo_sasrec.yaml")
    assert config.data.path == "demo" and config.loss.name == "ce"
    assert config.model.params == SASRecConfig(dim=32, num_blocks=2, max_len=50, dropout=0.2)
    assert (config.train.epochs, config.train.patience, config.train.batch_size, config.train.lr) == (
        30, 3, 128, 2e-3)


# --------------------------------------------------------------------------------------------- paths

@pytest.mark.parametrize("written", ["$SEQREC_DATA/x.txt", "${SEQREC_DATA}/x.txt"])
def test_data_path_expands_the_variable(written, monkeypatch, tmp_path):
    monkeypatch.setenv("SEQREC_DATA", str(tmp_path))
    assert load_config(None, [f"data.path={written}"]).data.path == f"{tmp_path}/x.txt"


def test_data_path_expands_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_config(None, ["data.path=~/logs/a.csv"]).data.path == f"{tmp_path}/logs/a.csv"
    assert config_from_dict({"data": {"path": tmp_path / "a.csv"}}).data.path == str(tmp_path / "a.csv")


def test_unset_data_variable_names_the_key_the_variable_and_the_fix(monkeypatch):
    monkeypatch.delenv("SEQREC_DATA", raising=False)
    path = CONFIGS / "ml1m_sasrec.yaml"
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith("path:"))
    message = _error(path)
    assert message.startswith(f"{path}:{line}: data.path: environment variable SEQREC_DATA is not set")
    assert "export SEQREC_DATA=" in message


# --------------------------------------------------------------------------------------------- overrides

def test_overrides_of_each_type():
    config = load_config(None, [
        "train.lr=1e-3", "train.weight_decay=0", "train.epochs=7", "train.clip_norm=", "train.progress=false",
        "train.device=cuda:1", "eval.ks=[10, 1, 10]", "eval.metric=ndcg@1", "model.dropout=0.1",
        "data.columns.user=uid", "data.columns.item=1", "data.separator=,", "data.path=a=b.csv",
    ])
    assert config.train.lr == 1e-3 and isinstance(config.train.lr, float)
    assert config.train.weight_decay == 0.0 and config.train.epochs == 7 and config.train.clip_norm is None
    assert config.train.progress is False and config.train.device == "cuda:1"
    assert config.eval.ks == [1, 10] and config.eval.metric == "NDCG@1"
    assert config.model.params.dropout == 0.1
    assert config.data.columns == {"user": "uid", "item": 1}
    assert config.data.separator == "," and config.data.path == "a=b.csv"


def test_overrides_replace_file_values(tmp_path):
    path = _write(tmp_path, "model:\n  name: sasrec\n  dim: 16\ntrain:\n  lr: 1e-2\n")
    assert load_config(path).train.lr == 0.01  # `1e-2` is a number, not the string YAML 1.1 would make it
    config = load_config(path, ["model.dim=24", "train.lr=0.5"])
    assert (config.model.params.dim, config.train.lr) == (24, 0.5)


def test_switching_model_drops_the_previous_models_keys(tmp_path):
    path = _write(tmp_path, "model:\n  name: sasrec\n  dim: 16\n")
    config = load_config(path, ["model.name=pop"])
    assert (config.model.name, config.model.params) == ("pop", PopConfig())
    assert load_config(path, ["model.name=sasrec"]).model.params.dim == 16  # same model: keys kept
    assert "unknown key 'model.dim'" in _error(None, ["model.name=pop", "model.dim=3"])


def test_model_section_from_python():
    section = ModelSection(name="SASRec", params=SASRecConfig(dim=8))
    assert (section.name, section.params.dim) == ("sasrec", 8)
    assert RunConfig(model=section).model.params.dim == 8
    with pytest.raises(ConfigError, match="unknown key 'model.dim'"):
        config_from_dict({"model": {"name": "pop", "params": SASRecConfig()}})


# --------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize(("override", "expected"), [
    ("train.learnig_rate=0.1", "unknown key 'train.learnig_rate'; did you mean 'train.lr'? valid keys: optimizer, "
                               "lr, weight_decay"),
    ("train.epochs=ten", "train.epochs: value 'ten' has the wrong type; expected an integer"),
    ("train.epochs=true", "train.epochs: value True has the wrong type; expected an integer"),
    ("data.path=12", "data.path: value 12 has the wrong type; expected a string"),
    ("data.columns.user=1.5", "data.columns.user: value 1.5 has the wrong type; expected a string or an integer"),
    ("train.lr=-1", "train.lr: value -1 is not allowed; expected a number > 0"),
    ("train.lr=.nan", "train.lr: value nan is not allowed; expected a finite number"),
    ("split.test_fraction=1.5", "split.test_fraction: value 1.5 is not allowed; expected a number > 0 and < 1"),
    ("eval.ks=[5, 0]", "eval.ks[1]: value 0 is not allowed; expected an integer >= 1"),
    ("loss.name=focal", "loss.name: value 'focal' is not allowed; expected 'ce', 'bce', 'bpr' or 'sampled_softmax'"),
    ("train.device=gpu", "train.device: value 'gpu' is not allowed; expected 'cpu', 'cuda', 'cuda:N' or 'auto'"),
    ("data.columns.usr=1", "data.columns.usr: unknown column 'usr'; expected one of user, item, time"),
    ("split.protocol=temporal", "split.protocol: the temporal protocol needs split.valid_fraction and"),
    ("model.name=sasrek", "model.name: unknown model 'sasrek'; did you mean 'sasrec'? known: bert4rec, gcsan, "
                          "gru4rec, hstu, lessr, nextitnet, pop, sasrec, srgnn"),
    ("model.dim=-1", "model.dim: value -1 is not allowed; expected an integer >= 1"),
    ("model.dropout=1", "model.dropout: value 1 is not allowed; expected a number >= 0 and < 1"),
    ("model.hidden_size=3", "unknown key 'model.hidden_size'; did you mean 'model.dim'? valid keys: name, "),
    ("eval.metric=NDCG@7", "eval.metric: value 'NDCG@7' is not allowed; expected one of HR@1, HR@5"),
    ("eval.exclude_history=windows", "eval.exclude_history: value 'windows' is not allowed; expected true, false or "
                                     "'window'"),
    ("eval.exclude_history=1", "eval.exclude_history: value 1 is not allowed; expected true, false or 'window'"),
])
def test_value_errors_name_key_value_allowed_and_source(override, expected):
    message = _error(None, [override])
    assert message.startswith(expected)
    assert message.endswith(f"(from --set {override})")
    assert "\n" not in message and "validation error" not in message and "pydantic" not in message


def test_metric_must_use_a_configured_cutoff():
    message = _error(None, ["eval.ks=[5]", "eval.metric=NDCG@10"])
    assert "eval.metric: value 'NDCG@10' is not allowed; expected one of HR@5, NDCG@5, MRR@5, MRR" in message
    assert load_config(None, ["eval.ks=[5]", "eval.metric=MRR"]).eval.metric == "MRR"


@pytest.mark.parametrize(("override", "expected"), [
    ("train", "--set 'train': expected SECTION.KEY=VALUE"),
    ("train.lr", "--set 'train.lr': expected SECTION.KEY=VALUE"),
    ("lr=0.1", "--set 'lr=0.1': expected SECTION.KEY=VALUE"),
    ("trian.lr=1", "--set 'trian.lr=1': unknown section 'trian'; did you mean 'train'? valid sections: data, split"),
    ("train.lr.x=1", "train.lr: value {'x': 1} has the wrong type; expected a number"),
])
def test_malformed_overrides(override, expected):
    assert _error(None, [override]).startswith(expected)


def test_errors_in_a_file_name_the_file_and_line(tmp_path):
    path = _write(tmp_path, "data:\n  path: demo\ntrain:\n  epochs: 3\n  lr: -1\n")
    assert _error(path) == f"{path}:5: train.lr: value -1 is not allowed; expected a number > 0"
    path = _write(tmp_path, "trian:\n  lr: 1\n")
    assert _error(path).startswith(f"{path}:1: unknown section 'trian'; did you mean 'train'?")
    path = _write(tmp_path, "train: 5\n")
    assert _error(path) == f"{path}:1: train: value 5 has the wrong type; expected a mapping"


def test_several_problems_are_one_error_listing_each(tmp_path):
    path = _write(tmp_path, "train:\n  lr: 0\n  epochs: 0\n")
    message = _error(path)
    assert message.splitlines() == [
        "2 problems in the configuration:",
        f"  - {path}:2: train.lr: value 0 is not allowed; expected a number > 0",
        f"  - {path}:3: train.epochs: value 0 is not allowed; expected an integer >= 1",
    ]


def test_missing_file(tmp_path):
    assert _error(tmp_path / "nope.yaml") == f"config file {tmp_path / 'nope.yaml'} does not exist"


@pytest.mark.parametrize(("text", "line", "problem"), [
    ("train:\n  lr: 0.1\n  epochs: [1, 2\nmodel:\n  dim: 3\n", 4, "expected ',' or ']'"),
    ("train:\n  lr: 0.1\n   epochs: 2\n", 3, "mapping values are not allowed here"),
    ("train:\n  lr: 0.1\n  lr: 0.2\n", 3, "duplicate key 'lr'"),
])
def test_yaml_syntax_errors_name_file_and_line(tmp_path, text, line, problem):
    path = _write(tmp_path, text)
    message = _error(path)
    assert message.startswith(f"{path}:{line}: invalid YAML: ") and problem in message
    assert "\n" not in message


def test_top_level_must_be_a_mapping(tmp_path):
    path = _write(tmp_path, "- train\n- eval\n")
    assert _error(path) == (f"{path}:1: the top level must be a mapping of sections (data, split, model, loss, "
                            "train, eval), got a list")
    with pytest.raises(ConfigError, match="the configuration must be a mapping of sections"):
        config_from_dict([1, 2])  # type: ignore[arg-type]


def test_config_from_dict_errors_are_config_errors():
    with pytest.raises(ConfigError, match=r"^unknown key 'loss\.negative'; did you mean 'loss\.negatives'\?"):
        config_from_dict({"loss": {"negative": "in_batch"}})


# --------------------------------------------------------------------------------------------- round trips

def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


ROUND_TRIP = ["model.dim=48", "model.activation=relu", "data.columns.user=uid", "data.columns.item=2",
              "data.min_rating=3.5", "split.protocol=temporal", "split.valid_fraction=0.1", "split.test_fraction=0.2",
              "split.targets=first", "loss.name=sampled_softmax", "loss.negatives=in_batch", "train.max_minutes=2.5",
              "train.num_threads=4", "eval.ks=[20, 10]", "eval.exclude_history=window", "eval.metric=HR@20"]


@pytest.mark.parametrize("overrides", [[], ROUND_TRIP, ["model.name=pop"]], ids=["defaults", "custom", "pop"])
def test_dict_round_trip(overrides):
    config = load_config(None, overrides)
    tree = config_to_dict(config)
    assert _plain(tree) and list(tree) == ["data", "split", "model", "loss", "train", "eval"]
    # flat, as written in YAML: name beside the hyper-parameters
    assert tree["model"] == {"name": config.model.name, **config.model.params.model_dump(mode="json")}
    assert config_from_dict(tree) == config
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(tree))) == config


def test_yaml_round_trip_is_atomic(tmp_path):
    config = load_config(None, ROUND_TRIP)
    path = tmp_path / "run" / "config.yaml"
    dump_config(RunConfig(), path)
    dump_config(config, path)  # replaces the first
    assert load_config(path) == config
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temporary file left behind


# --------------------------------------------------------------------------------------------- hash and docs

def test_config_hash_is_stable_and_changes_with_a_value():
    digest = config_hash(load_config(None, ["model.dim=48"]))
    assert re.fullmatch(r"[0-9a-f]{12}", digest)
    assert digest == config_hash(load_config(None, ["model.dim=48"]))
    assert digest == config_hash(config_from_dict(config_to_dict(load_config(None, ["model.dim=48"]))))
    assert config_hash(load_config(None, ["eval.ks=[10, 1]"])) == config_hash(load_config(None, ["eval.ks=[1, 10]"]))
    assert digest != config_hash(load_config(None, ["model.dim=49"]))
    assert config_hash(RunConfig()) != config_hash(load_config(None, ["train.seed=43"]))


def test_describe_keys_documents_every_field():
    keys = describe_keys()
    for section in ("data", "split", "loss", "train", "eval"):
        fields = type(getattr(RunConfig(), section)).model_fields
        assert {f"{section}.{key}" for key in fields} <= set(keys)
    assert {f"model.{key}" for key in SASRecConfig.model_fields} | {"model.name"} <= set(keys)
    assert all(text.strip() for text in keys.values())
    assert keys["train.lr"] == "learning rate"
    assert keys["model.dim"].startswith("D, item embedding") and "sasrec]" in keys["model.dim"]
    assert "[nextitnet]" in keys["model.num_blocks"]  # a key whose meaning differs by model says so
    assert "[" not in keys["model.similarity"]  # every model has it
