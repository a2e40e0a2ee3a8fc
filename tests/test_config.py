"""Run configuration: defaults, shipped configs, overrides, round trips, and each error's message."""

from pathlib import Path

import pytest

from seqrec.config import (
    RunConfig,
    config_from_dict,
    config_hash,
    config_to_dict,
    describe_keys,
    dump_config,
    load_config,
)
from seqrec.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_defaults():
    config = load_config()
    assert config == RunConfig()
    assert config.model.name == "sasrec" and config.model.params.max_len == 200
    assert config.loss.name == "ce" and config.eval.metric == "NDCG@10"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path, monkeypatch, tmp_path):
    monkeypatch.setenv("SEQREC_DATA", str(tmp_path))
    config = load_config(path)
    if "ml1m" in path.name:
        assert config.data.path == f"{tmp_path}/ml-1m-sasrec/ml-1m.txt"
        assert config.eval.exclude_history and config.split.protocol == "leave_one_out"


def test_ml1m_config_is_the_literature_protocol(monkeypatch):
    monkeypatch.setenv("SEQREC_DATA", "/data")
    config = load_config(CONFIGS / "ml1m_sasrec.yaml")
    assert (config.model.name, config.model.params.max_len, config.loss.name) == ("sasrec", 200, "ce")
    assert config.data.format == "pairs"


def test_overrides_of_each_type():
    config = load_config(None, ["train.lr=3e-4", "train.clip_norm=", "eval.ks=[10, 1, 10]", "model.dropout=0.1",
                                "data.columns.user=uid", "data.columns.item=1", "train.progress=false"])
    assert config.train.lr == 3e-4 and config.train.clip_norm is None and config.train.progress is False
    assert config.eval.ks == [1, 10]
    assert config.model.params.dropout == 0.1
    assert config.data.columns == {"user": "uid", "item": 1}


def test_switching_model_uses_its_own_keys():
    assert load_config(None, ["model.name=pop"]).model.name == "pop"
    with pytest.raises(ConfigError, match="unknown key 'model.dim'"):
        load_config(None, ["model.name=pop", "model.dim=3"])


def test_round_trips(tmp_path):
    config = load_config(None, ["model.dim=48", "eval.exclude_history=true"])
    assert config_from_dict(config_to_dict(config)) == config
    dump_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config


def test_hash_is_stable_and_sensitive():
    a, b = load_config(None, ["model.dim=48"]), load_config(None, ["model.dim=48"])
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(load_config(None, ["model.dim=49"]))


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.learning_rate=0.1"], "unknown key 'train.learning_rate'; did you mean 'train.lr'?"),
    (["model.hiden_size=3"], "did you mean 'model.dim'?"),
    (["train.epochs=many"], "train.epochs: value 'many' is not allowed; expected a valid integer"),
    (["train.lr=0"], "train.lr: value 0 is not allowed; expected a number > 0"),
    (["model.dim=-1"], "model.dim: value -1 is not allowed; expected a number >= 1"),
    (["model.dropout=1"], "model.dropout: value 1 is not allowed; expected a number < 1"),
    (["model.name=bert"], "unknown model 'bert'"),
    (["loss.name=focal"], "loss.name: value 'focal' is not allowed"),
    (["eval.metric=NDCG@7"], "expected one of the computed metrics"),
    (["train.device=gpu"], "expected 'cpu', 'cuda', 'cuda:N' or 'auto'"),
    (["evaluation.ks=[1]"], "unknown section 'evaluation'; did you mean 'eval'?"),
    (["train"], "expected SECTION.KEY=VALUE"),
    (["data.path=${SEQREC_NO_SUCH_VAR}/x.csv"], "uses $SEQREC_NO_SUCH_VAR, which is not set"),
])
def test_errors_name_key_value_and_what_is_allowed(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: sasrec\n  dim: [64\n")
    with pytest.raises(ConfigError, match=rf"{bad}:\d+: invalid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)
    bad.write_text("train: 5\n")
    with pytest.raises(ConfigError, match="section 'train' must be a mapping"):
        load_config(bad)


def test_describe_keys_documents_every_field():
    keys = describe_keys()
    assert keys["train.lr"] == "learning rate" and "model.name" in keys
    assert all(text for text in keys.values())
