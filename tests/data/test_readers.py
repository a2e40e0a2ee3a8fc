"""Readers: every format, the robustness cases (CRLF, BOM, blank lines, quotes, string ids, gzip) and real data."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from seqrec.data.readers import FORMATS, detect_format, parse_column_mapping, read_interactions
from seqrec.errors import ConfigError


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def rows(data, *names):
    return data.frame.select(names or data.frame.columns).rows()


# ---------------------------------------------------------------------------------------------- formats

def test_formats_constant():
    assert FORMATS == ("dat", "csv", "tsv", "parquet", "inter", "pairs", "sequences", "sessions")


def test_dat_movielens(tmp_path):
    path = write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1357::4.5::978298709\n")
    data = read_interactions(path)
    assert data.frame.columns == ["user", "item", "time", "rating"]
    assert rows(data) == [(1, 1193, 978300760, 5.0), (1, 661, 978302109, 3.0), (2, 1357, 978298709, 4.5)]
    assert data.frame.schema == {"user": pl.Int64, "item": pl.Int64, "time": pl.Int64, "rating": pl.Float64}
    assert data.has_time and data.source == str(path)


def test_csv_with_header_default_names(tmp_path):
    path = write(tmp_path, "log.csv", "UserId,MovieId,Rating,Timestamp\n10,20,4.0,100\n11,21,3.5,101\n")
    data = read_interactions(path)
    assert rows(data, "user", "item", "rating", "time") == [(10, 20, 4.0, 100), (11, 21, 3.5, 101)]


def test_csv_mapping_by_name_and_extra_columns(tmp_path):
    path = write(tmp_path, "log.csv", "a,uid,x,ts,iid\nq,1,z,5,7\nr,2,z,6,8\n")
    data = read_interactions(path, columns={"user": "uid", "item": "iid", "time": "ts"})
    assert rows(data) == [(1, 7, 5), (2, 8, 6)]


def test_csv_headerless_positional(tmp_path):
    path = write(tmp_path, "log.csv", "5,1,7\n6,2,8\n")
    data = read_interactions(path, columns={"user": 2, "item": 0, "time": 1})
    assert rows(data) == [(7, 5, 1), (8, 6, 2)]
    # default positions without a header: user, item, time for three fields
    assert rows(read_interactions(path)) == [(5, 1, 7), (6, 2, 8)]


def test_tsv_headerless_four_fields(tmp_path):
    path = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    data = read_interactions(path, format="tsv")
    assert rows(data, "user", "item", "rating", "time") == [(196, 242, 3.0, 881250949), (186, 302, 3.0, 891717742)]


def test_semicolon_separator_sniffed_and_session_key(tmp_path):
    path = write(tmp_path, "views.csv", "session_id;user_id;item_id;timeframe;eventdate\n"
                                       "1;NA;81766;526309;2016-05-09\n1;NA;31331;1031018;2016-05-09\n"
                                       "2;7;32118;243569;2016-05-10\n")
    data = read_interactions(path, columns={"session": "session_id", "item": "item_id", "time": "eventdate"})
    assert rows(data) == [(1, 81766, 1462752000, 1), (1, 31331, 1462752000, 1), (2, 32118, 1462838400, 2)]
    assert data.frame.columns == ["user", "item", "time", "session"]


def test_sessions_format_with_table_options_uses_session_as_key(tmp_path):
    path = write(tmp_path, "views.csv", "sessionId;userId;itemId;timeframe;eventdate\n1;NA;5;0;2016-05-09\n"
                                       "2;9;6;0;2016-05-10\n")
    data = read_interactions(path, format="sessions", header=True, separator=";",
                             columns={"session": "sessionId", "user": "userId", "item": "itemId", "time": "eventdate"})
    assert rows(data, "user", "item", "session") == [(1, 5, 1), (2, 6, 2)]


def test_inter_typed_header(tmp_path):
    path = write(tmp_path, "x.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                     "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    data = read_interactions(path)
    assert rows(data, "user", "item", "rating", "time") == [(196, 242, 3.0, 881250949), (186, 302, 3.0, 891717742)]


def test_inter_string_tokens(tmp_path):
    path = write(tmp_path, "x.inter", "session_id:token\titem_id:token\ttimestamp:float\nab\tz1\t1.5\nab\tz2\t2.5\n")
    data = read_interactions(path)
    assert rows(data) == [("ab", "z1", 1.5, "ab"), ("ab", "z2", 2.5, "ab")]
    assert data.frame.schema["time"] == pl.Float64


def test_parquet(tmp_path):
    path = tmp_path / "log.parquet"
    pl.DataFrame({"user_id": [3, 3, 4], "item_id": ["a", "b", "a"], "timestamp": [30, 10, 20],
                  "rating": [1, 2, 3]}).write_parquet(path)
    data = read_interactions(path)
    assert rows(data) == [(3, "a", 30, 1.0), (3, "b", 10, 2.0), (4, "a", 20, 3.0)]
    assert data.frame.schema["user"] == pl.Int64 and data.frame.schema["item"] == pl.String


def test_parquet_datetime_and_narrow_ints(tmp_path):
    path = tmp_path / "log.pq"
    frame = pl.DataFrame({"u": pl.Series([1, 2], dtype=pl.UInt32), "i": pl.Series([5, 6], dtype=pl.Int16),
                          "when": pl.Series(["2016-05-09 00:00:01", "2016-05-10 00:00:00"]).str.to_datetime()})
    frame.write_parquet(path)
    data = read_interactions(path, columns={"user": "u", "item": 1, "time": "when"})
    assert rows(data) == [(1, 5, 1462752001), (2, 6, 1462838400)]
    assert data.frame.schema == {"user": pl.Int64, "item": pl.Int64, "time": pl.Int64}


def test_pairs(tmp_path):
    path = write(tmp_path, "ml.txt", "1 10\n1 11\n2 10\n")
    data = read_interactions(path)
    assert rows(data) == [(1, 10, 0), (1, 11, 1), (2, 10, 2)]
    assert not data.has_time


def test_pairs_tabs_and_repeated_spaces(tmp_path):
    path = write(tmp_path, "ml.txt", "1\t10\n1   11\n 2 10 \n")
    assert rows(read_interactions(path, format="pairs"), "user", "item") == [(1, 10), (1, 11), (2, 10)]


def test_sequences(tmp_path):
    path = write(tmp_path, "seq.txt", "1 5 6 7\n2 8 5\n3 9 9 9 9\n")
    data = read_interactions(path)
    assert detect_format(path) == "sequences"
    assert rows(data) == [(1, 5, 0), (1, 6, 1), (1, 7, 2), (2, 8, 3), (2, 5, 4),
                          (3, 9, 5), (3, 9, 6), (3, 9, 7), (3, 9, 8)]
    assert not data.has_time


def test_sessions(tmp_path):
    path = write(tmp_path, "train_sessions.txt", "1,2\n3,4,5\n6,7\n")
    data = read_interactions(path)
    assert detect_format(path) == "sessions"
    assert rows(data) == [(0, 1, 0, 0), (0, 2, 1, 0), (1, 3, 2, 1), (1, 4, 3, 1), (1, 5, 4, 1), (2, 6, 5, 2),
                          (2, 7, 6, 2)]
    assert data.frame.columns == ["user", "item", "time", "session"]


def test_sessions_whitespace_and_string_items(tmp_path):
    path = write(tmp_path, "s.txt", "a b\nc\n")
    assert rows(read_interactions(path, format="sessions"), "user", "item") == [(0, "a"), (0, "b"), (1, "c")]


# ---------------------------------------------------------------------------------------------- robustness

def test_crlf_bom_and_trailing_blank_lines(tmp_path):
    path = write(tmp_path, "log.csv", b"\xef\xbb\xbfuser,item,time\r\n1,2,3\r\n4,5,6\r\n\r\n\r\n  \r\n")
    data = read_interactions(path)
    assert rows(data) == [(1, 2, 3), (4, 5, 6)]


def test_blank_lines_inside_and_before(tmp_path):
    path = write(tmp_path, "log.csv", "\n\nuser,item,time\n\n1,2,3\n\n4,5,6\n")
    assert rows(read_interactions(path)) == [(1, 2, 3), (4, 5, 6)]


def test_crlf_in_line_formats(tmp_path):
    pairs = write(tmp_path, "p.txt", b"1 2\r\n3 4\r\n\r\n")
    sessions = write(tmp_path, "s.txt", b"\xef\xbb\xbf1,2\r\n3\r\n")
    assert rows(read_interactions(pairs), "user", "item") == [(1, 2), (3, 4)]
    assert rows(read_interactions(sessions), "user", "item") == [(0, 1), (0, 2), (1, 3)]


def test_quoted_fields_with_separators_inside(tmp_path):
    path = write(tmp_path, "log.csv", 'user,item,time,note\n"a,1","x ""y""",3,"multi\nline, text"\nb,z,4,plain\n')
    data = read_interactions(path)
    assert rows(data) == [("a,1", 'x "y"', 3), ("b", "z", 4)]


def test_string_ids_stay_strings(tmp_path):
    path = write(tmp_path, "log.csv", "user,item,time\nA1B,0001,5\nC2,X,6\n")
    data = read_interactions(path)
    assert rows(data) == [("A1B", "0001", 5), ("C2", "X", 6)]
    assert data.frame.schema["user"] == pl.String


def test_late_string_id_beyond_the_sample(tmp_path):
    body = "".join(f"{u},{u % 7},{u}\n" for u in range(3000)) + "u3000,7,3000\n"
    data = read_interactions(write(tmp_path, "log.csv", "user,item,time\n" + body))
    assert data.frame.schema["user"] == pl.String and data.frame.schema["item"] == pl.Int64
    assert data.frame["user"][-1] == "u3000" and data.frame["user"][0] == "0"


def test_float_and_iso_times(tmp_path):
    floats = write(tmp_path, "f.csv", "user,item,time\n1,2,1.5\n1,3,2\n")
    assert rows(read_interactions(floats), "time") == [(1.5,), (2.0,)]
    iso = write(tmp_path, "d.csv", "user,item,time\n1,2,2016-05-09T12:00:01\n1,3,2016-05-09 12:00:02\n"
                                   "1,4,2016-05-09T12:00:03Z\n1,5,2016-05-09T14:00:04+02:00\n1,6,2016-05-10\n")
    data = read_interactions(iso)
    assert data.frame["time"].to_list() == [1462795201, 1462795202, 1462795203, 1462795204, 1462838400]
    assert data.frame.schema["time"] == pl.Int64


def test_explicit_separator_and_header(tmp_path):
    path = write(tmp_path, "log.txt", "1|2|3\n4|5|6\n")
    data = read_interactions(path, format="csv", separator="|", header=False, columns={"user": 0, "item": 1})
    assert rows(data) == [(1, 2, 0), (4, 5, 1)] and not data.has_time
    tab = write(tmp_path, "t.txt", "u\ti\n1\t2\n")
    assert rows(read_interactions(tab, format="tsv", separator="\\t", header=True,
                                  columns={"user": "u", "item": "i"}), "user", "item") == [(1, 2)]


def test_gzip_by_name_and_by_magic(tmp_path):
    content = b"user_id,item_id,timestamp\n1,2,3\n4,5,6\n"
    named = write(tmp_path, "log.csv.gz", gzip.compress(content))
    assert rows(read_interactions(named)) == [(1, 2, 3), (4, 5, 6)]
    hidden = write(tmp_path, "ratings.dat", gzip.compress(b"1::2::5::10\n"))
    assert rows(read_interactions(hidden), "user", "item", "rating", "time") == [(1, 2, 5.0, 10)]
    pairs = write(tmp_path, "seq.txt.gz", gzip.compress(b"1 2\n1 3\n"))
    assert detect_format(pairs) == "pairs"
    assert rows(read_interactions(pairs), "user", "item") == [(1, 2), (1, 3)]


def test_parquet_gzip(tmp_path):
    plain = tmp_path / "x.parquet"
    pl.DataFrame({"user": [1], "item": [2]}).write_parquet(plain)
    packed = write(tmp_path, "x.parquet.gz", gzip.compress(plain.read_bytes()))
    assert rows(read_interactions(packed)) == [(1, 2, 0)]


# ---------------------------------------------------------------------------------------------- detection

@pytest.mark.parametrize(("name", "content", "expected"), [
    ("a.dat", "1::2::3::4\n", "dat"),
    ("a.csv", "1,2\n", "csv"),
    ("a.tsv", "1\t2\n", "tsv"),
    ("a.inter", "user_id:token\titem_id:token\n1\t2\n", "inter"),
    ("a.txt", "1::2::3::4\n", "dat"),
    ("a.txt", "user_id:token\titem_id:token\n1\t2\n", "inter"),
    ("a.txt", "1,2,3\n4,5\n6\n", "sessions"),
    ("a.txt", "1 2\n1 3\n", "pairs"),
    ("a.txt", "1 2 3\n2 4\n", "sequences"),
    ("a.txt", "user\titem\ttime\n1\t2\t3\n", "tsv"),
    ("a.txt", "user,item\n1,2\n", "csv"),
    ("noext", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n", "tsv"),
])
def test_detect_format(tmp_path, name, content, expected):
    assert detect_format(write(tmp_path, name, content)) == expected


def test_detect_parquet_by_content(tmp_path):
    path = tmp_path / "data.bin"
    pl.DataFrame({"user": [1], "item": [2]}).write_parquet(path)
    assert detect_format(path) == "parquet"


def test_parse_column_mapping():
    assert parse_column_mapping("user=uid,item=1,time=ts") == {"user": "uid", "item": 1, "time": "ts"}
    assert parse_column_mapping(" session = sessionId , item=\"2\" ,") == {"session": "sessionId", "item": "2"}
    for bad, part in [("user", "user"), ("user=a,foo=b", "foo=b"), ("user=,item=1", "user="),
                      ("user=1,user=2", "user=2"), ("item=-1", "item=-1")]:
        with pytest.raises(ConfigError, match=part):
            parse_column_mapping(bad)
    with pytest.raises(ConfigError):
        parse_column_mapping("  ")


# ---------------------------------------------------------------------------------------------- real data

def check(data, n_rows, n_users, n_items):
    frame = data.frame
    assert (len(frame), frame["user"].n_unique(), frame["item"].n_unique()) == (n_rows, n_users, n_items)


@pytest.mark.realdata
def test_real_ml1m_sasrec_pairs(dataset):
    path = dataset("ml-1m-sasrec/ml-1m.txt")
    assert detect_format(path) == "pairs"
    data = read_interactions(path)
    check(data, 999_611, 6_040, 3_416)
    assert not data.has_time and data.frame["time"][-1] == 999_610


@pytest.mark.realdata
def test_real_ml100k_udata(dataset):
    path = dataset("ml-100k/u.data")
    for options in ({"format": "tsv"}, {"format": "tsv", "header": False, "separator": "\t",
                                         "columns": {"user": 0, "item": 1, "rating": 2, "time": 3}}):
        data = read_interactions(path, **options)
        check(data, 100_000, 943, 1_682)
        assert data.has_time and data.frame["rating"].min() == 1.0 and data.frame["rating"].max() == 5.0


@pytest.mark.realdata
def test_real_recbole_inter(dataset):
    data = read_interactions(dataset("recbole-ml-100k/ml-100k.inter"))
    check(data, 100_000, 943, 1_682)
    assert data.frame.columns == ["user", "item", "time", "rating"]
    assert data.frame.row(0) == (196, 242, 881250949, 3.0)


@pytest.mark.realdata
@pytest.mark.parametrize(("relative", "counts"), [
    ("diginetica-srgnn/train_sessions.txt", (906_140, 186_670, 43_097)),
    ("yoochoose1_64-srgnn/train_sessions.txt", (486_026, 116_167, 17_376)),
])
def test_real_session_lists(dataset, relative, counts):
    data = read_interactions(dataset(relative))
    check(data, *counts)
    assert (data.frame["user"] == data.frame["session"]).all() and data.frame["user"][-1] == counts[1] - 1


@pytest.mark.realdata
def test_real_diginetica_raw_sample(dataset):
    path = dataset("diginetica-sample-raw/sample_train-item-views.csv")
    data = read_interactions(path, columns=parse_column_mapping("session=session_id,item=item_id,time=eventdate"))
    # 12,391 data rows: the file's last line has no newline, so `wc -l` (and the README's 12,390) is one short
    check(data, 12_391, 2_986, 7_139)
    assert data.has_time and data.frame.schema["time"] == pl.Int64
    assert data.frame["time"][0] == 1462752000  # 2016-05-09 00:00:00 UTC


@pytest.mark.realdata
@pytest.mark.parametrize(("relative", "counts"), [
    ("amazon-video-sasrec/Video.txt", (287_107, 31_013, 23_715)),
    ("amazon-sports-yelp-s3rec/Sports_and_Outdoors.txt", (296_337, 35_598, 18_357)),
    ("amazon-sports-yelp-s3rec/Yelp.txt", (316_354, 30_431, 20_033)),
])
def test_real_pairs_and_sequences(dataset, relative, counts):
    data = read_interactions(dataset(relative))
    check(data, *counts)
    assert not data.has_time

