"""The README's own-data config example is a valid config that reads a CSV with those columns."""

import re
from pathlib import Path

from seqrec import api
from seqrec.config import load_config

README = Path(__file__).resolve().parents[1] / "README.md"


def test_own_csv_config_example_loads_and_reads_the_columns(tmp_path):
    block = re.search(r"```yaml\n(# my_sasrec\.yaml.*?)```", README.read_text(), re.S)
    assert block, "the README's own-data config example is gone"
    log = tmp_path / "ratings.csv"
    log.write_text("uid,sku,ts\n" + "".join(f"u{u},s{(u * 5 + t) % 40},{1000 * t + u}\n"
                                            for u in range(60) for t in range(12)))
    config_file = tmp_path / "my_sasrec.yaml"
    config_file.write_text(block.group(1).replace("data/ratings.csv", str(log)))
    config = load_config(config_file)
    assert config.data.columns == {"user": "uid", "item": "sku", "time": "ts"} and config.model.name == "sasrec"
    split = api.load_split(config)
    assert split.data.num_users == 60 and split.data.num_items == 40 and len(split.test) == 60
