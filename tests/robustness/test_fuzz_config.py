"""Random YAML documents and random `--set` values into the config loader (`seqrec.config.load_config`).

Property: a `RunConfig`, or a `ConfigError` of bounded length naming the file or the `--set` item; never another
exception. An accepted number was written as that number (decimal, exponent or hex; `12:30` is not 750 and
`017` not 15), an accepted bool as a YAML bool word, and every value set at a known key is the value read.
"""

from __future__ import annotations

import math
import re
import string

import pytest
import yaml
from fuzzing import fuzz
from hypothesis import event, given
from hypothesis import strategies as st

from seqrec.config import config_to_dict, describe_keys, load_config
from seqrec.errors import ConfigError

KEYS = sorted(describe_keys())
SECTIONS = sorted({key.split(".")[0] for key in KEYS})
NUMBER = re.compile(r"[-+]?(?:(?:[0-9][0-9_]*)?\.?[0-9_]*(?:[eE][-+]?[0-9]+)?|0x[0-9a-fA-F_]+|\.(?:inf|Inf|INF))\Z")
BOOL_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n"}
MESSAGE_LIMIT = 20_000

TOKENS = ["12:30", "1:30.5", "017", "0o17", "0x1F", "1_000", "1e-3", "1.0e-3", ".inf", "-.inf", ".nan", "yes", "no",
          "on", "off", "~", "null", "", "[1, 2]", "[1, x]", "{a: 1}", "!!python/object:os.system", "&a [1]", "*a",
          "'quoted'", '"dq"', "2016-05-09", "3", "-1", "0", "0.5", "1e400", "9" * 5000, "sasrec", "gru4rec", "auto",
          "cpu", "cuda:0", "leave_one_out", "ce", "[1, 5, 10]", "[]", "true", "False"]


def scalars():
    return st.one_of(st.integers(1, 100), st.floats(0.0, 1.0), st.booleans(), st.integers(-10 ** 6, 10 ** 6),
                     st.integers(), st.floats(), st.none(), st.text(max_size=20), st.sampled_from(TOKENS))


def documents():
    """A config-shaped tree: real sections and keys mostly, random ones sometimes, values of any YAML type."""
    leaf = scalars() | st.lists(scalars(), max_size=5)
    keys = st.sampled_from(KEYS).map(lambda k: k.split(".", 1)[1]) | st.text(string.ascii_lowercase + "_",
                                                                                 min_size=1, max_size=10)
    section = st.dictionaries(keys, leaf | st.dictionaries(keys, leaf, max_size=3), max_size=3)
    anything = st.dictionaries(st.sampled_from(SECTIONS) | st.text(max_size=6), section | leaf, max_size=6)
    return anything | st.lists(st.tuples(st.sampled_from([k for k in KEYS if not k.startswith("model.")]), scalars()),
                               max_size=4).map(nest)


def nest(pairs: list[tuple[str, object]]) -> dict:
    """[("train.lr", 0.1), ...] -> {"train": {"lr": 0.1}, ...}"""
    tree: dict = {}
    for key, value in pairs:
        section, _, name = key.partition(".")
        tree.setdefault(section, {})[name] = value
    return tree


def check_error(error: ConfigError, where: str) -> None:
    text = str(error)
    assert len(text) < MESSAGE_LIMIT and where in text, text[:500]


def check_number(raw: str, value) -> None:
    """An accepted number or bool was written as one."""
    text = raw.strip()
    if isinstance(value, bool):
        assert text.lower() in BOOL_WORDS, (raw, value)
    elif isinstance(value, (int, float)):
        assert NUMBER.match(text), (raw, value)
        if text.lower().lstrip("+-").startswith("0x"):
            assert value == int(text.replace("_", ""), 16)
        elif math.isfinite(value):
            assert value == pytest.approx(float(text.replace("_", "")))


@fuzz(300)
@given(tree=documents())
def test_random_yaml_documents_load_or_are_refused_naming_the_file(tmp_path_factory, tree):
    path = tmp_path_factory.mktemp("cfg") / "run.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True))
    try:
        config = load_config(path)
    except ConfigError as error:
        check_error(error, "run.yaml")
        event("refused")
        return
    event("accepted")
    loaded = config_to_dict(config)
    for name, section in tree.items():                          # every known scalar given is the value read
        if not isinstance(section, dict) or name not in loaded or name == "model":
            continue
        for key, value in section.items():
            if key in loaded[name] and key not in ("path", "test_path") and not isinstance(value, (dict, list)):
                got = loaded[name][key]
                widened = isinstance(value, int) and not isinstance(value, bool) and got == float(value)
                assert got == value or widened, (name, key, value, got)


@fuzz(150)
@given(text=st.one_of(st.text(max_size=300), st.lists(st.sampled_from(TOKENS + ["train:", "  lr:", "eval:", "- 1",
                                                                                "  ks:", ":", "- ", "  - x"]),
                                                      max_size=20).map("\n".join)))
def test_random_yaml_text_loads_or_is_refused_naming_the_file(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "run.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError as error:
        check_error(error, "run.yaml")
        event("refused")
    else:
        event("accepted")


@fuzz(400)
@given(key=st.sampled_from(KEYS) | st.sampled_from(KEYS) | st.text(string.ascii_lowercase + "._", max_size=12),
       raw=st.sampled_from(TOKENS) | st.integers(1, 100).map(str) | st.floats(0.0, 1.0).map(repr)
       | st.sampled_from(sorted(BOOL_WORDS)) | st.text(max_size=12) | st.integers().map(str) | st.floats().map(repr),
       sep=st.sampled_from(["=", "=", " = ", "=="]))
def test_random_set_values_are_taken_at_their_meaning_or_refused(key, raw, sep):
    item = f"{key}{sep}{raw}"
    try:
        config = load_config(None, [item])
    except ConfigError as error:
        assert len(str(error)) < MESSAGE_LIMIT and "--set" in str(error), str(error)[:300]
        event("refused")
        return
    event("accepted")
    section, _, name = key.strip().partition(".")
    value = config_to_dict(config)[section].get(name) if section != "model" else None
    if "." not in name and sep == "=" and section != "model" and name not in ("path", "test_path"):
        check_number(raw, value)


@pytest.mark.parametrize(("item", "message"), [("model.dim=12:30", "value '12:30' has the wrong type"),
                                               ("train.epochs=017", "value '017' has the wrong type"),
                                               ("train.lr=1:30.5", "value '1:30.5' has the wrong type"),
                                               ("train.epochs=" + "9" * 5000, "4300 digits")])
def test_yaml_11_numbers_that_change_meaning_are_refused(item, message):
    """Regression (fuzzing): YAML 1.1 made `model.dim=12:30` the base-60 number 750 and `train.epochs=017` the
    octal 15, silently; an integer of 5000 digits raised Python's ValueError (a traceback)."""
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        load_config(None, [item])
    assert len(str(caught.value)) < 400
    assert load_config(None, ["train.epochs=1_000", "train.lr=1e-3", "model.dim=0x40"]).train.epochs == 1000


def test_an_alias_bomb_or_a_long_bad_list_gives_a_short_error(tmp_path):
    """Regression (fuzzing): an alias-expanded list of 10^5 items made a 0.5 MB message, and `--set` of a list
    of 3000 bad items an 18 MB one (the whole item repeated on each line)."""
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcd", "bcde")]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(levels) + "\neval:\n  ks: *e\n")
    with pytest.raises(ConfigError, match="bomb.yaml:7: eval.ks") as caught:
        load_config(path)
    assert len(str(caught.value)) < 5000
    with pytest.raises(ConfigError, match=r"3000 problems(.|\n)*and 2980 more") as caught:
        load_config(None, ["eval.ks=[" + ",".join(["x"] * 3000) + "]"])
    assert len(str(caught.value)) < 5000
