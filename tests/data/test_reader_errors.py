"""Readers on bad input: one DataError naming the file, line, column, value and what was expected."""

from __future__ import annotations

import contextlib
import gzip
import random
from pathlib import Path

import polars as pl
import pytest

from seqrec.data.readers import detect_format, read_interactions
from seqrec.errors import ConfigError, DataError, SeqrecError


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def error(path, **options) -> DataError:
    with pytest.raises(DataError) as info:
        read_interactions(path, **options)
    message = str(info.value)
    assert str(path) in message
    assert "Traceback" not in message and "polars" not in message.lower()
    return info.value


def test_missing_path(tmp_path):
    err = error(tmp_path / "nope.csv")
    assert "no such file" in str(err)
    with pytest.raises(DataError, match="no such file"):
        detect_format(tmp_path / "nope.txt")


def test_directory(tmp_path):
    assert "is a directory" in str(error(tmp_path))


@pytest.mark.parametrize("name", ["empty.csv", "empty.txt", "empty.dat", "empty.parquet"])
def test_empty_file(tmp_path, name):
    assert "file is empty" in str(error(write(tmp_path, name, b"")))


def test_blank_file(tmp_path):
    assert "file is empty" in str(error(write(tmp_path, "blank.csv", "\n  \n\n")))


def test_header_only(tmp_path):
    err = error(write(tmp_path, "h.csv", "user_id,item_id,timestamp\n\n"))
    assert "header line but no data rows" in str(err) and err.line == 1


def test_unknown_column_lists_available_columns(tmp_path):
    path = write(tmp_path, "u.csv", "user_id,item_id,timestamp\n1,2,3\n")
    err = error(path, columns={"user": "uid", "item": "item_id"})
    message = str(err)
    assert "'uid'" in message and "'user'" in message
    assert "'user_id', 'item_id', 'timestamp'" in message


def test_unrecognised_header_without_mapping(tmp_path):
    err = error(write(tmp_path, "x.csv", "who,what,when\nA,B,5\n"))
    assert "cannot tell which columns" in str(err) and "'who', 'what', 'when'" in str(err)


def test_position_beyond_fields(tmp_path):
    err = error(write(tmp_path, "p.csv", "1,2,3\n4,5,6\n"), columns={"user": 0, "item": 5})
    message = str(err)
    assert "position 5" in message and "'item'" in message and "3 fields" in message and err.line == 1


def test_too_few_fields(tmp_path):
    path = write(tmp_path, "few.csv", "user_id,item_id,timestamp\n1,2,3\n4,5\n6,7,8\n")
    err = error(path)
    assert f"{path}:3:" in str(err)
    assert "too few fields" in str(err) and "2 fields" in str(err) and "'4,5'" in str(err) and "3 fields" in str(err)


def test_too_many_fields(tmp_path):
    path = write(tmp_path, "many.csv", "user_id,item_id,timestamp\n1,2,3\n4,5,6,7\n6,7,8\n")
    err = error(path)
    assert f"{path}:3:" in str(err) and "too many fields" in str(err) and "'4,5,6,7'" in str(err)


def test_too_many_fields_in_an_unmapped_column_is_still_an_error(tmp_path):
    path = write(tmp_path, "m.tsv", "u\ti\tx\n1\t2\ta\n1\t3\tb\tc\n")
    err = error(path, columns={"user": "u", "item": "i"})
    assert err.line == 3 and "too many fields" in str(err)


def test_non_numeric_time(tmp_path):
    path = write(tmp_path, "time.csv", "user_id,item_id,timestamp\n1,2,3\n4,5,6\n6,7,yesterday\n")
    err = error(path)
    message = str(err)
    assert f"{path}:4:" in message and "column 'timestamp'" in message and "'yesterday'" in message
    assert "ISO date" in message and err.column == "timestamp" and err.value == "yesterday"


def test_bad_time_far_beyond_the_sample_with_blank_line(tmp_path):
    path = write(tmp_path, "late.csv", "user,item,time\n" + "1,2,3\n" * 5000 + "\n1,2,x\n1,2,3\n")
    err = error(path)
    assert err.line == 5003 and err.value == "x" and err.column == "time"


def test_time_mixing_numbers_and_dates(tmp_path):
    err = error(write(tmp_path, "mix.csv", "user,item,time\n1,2,3\n1,3,2016-05-09\n"))
    assert err.line == 3 and "2016-05-09" in str(err) and "number" in str(err)


def test_invalid_date(tmp_path):
    err = error(write(tmp_path, "d.csv", "user,item,time\n1,2,2016-05-09\n1,3,2016-13-09\n"))
    assert err.line == 3 and err.value == "2016-13-09"


def test_non_numeric_rating(tmp_path):
    path = write(tmp_path, "rating.csv", "user,item,rating\n1,2,3\n4,5,five\n6,7,8\n")
    err = error(path)
    assert f"{path}:3:" in str(err) and "column 'rating'" in str(err) and "'five'" in str(err)
    assert "rating is not a number" in str(err)


def test_empty_id(tmp_path):
    path = write(tmp_path, "eid.csv", "user,item,time\n1,2,3\n,5,6\n6,7,8\n")
    err = error(path)
    assert f"{path}:3:" in str(err) and "empty user field" in str(err) and "column 'user'" in str(err)
    quoted = write(tmp_path, "q.csv", 'user,item,time\n1,2,3\n4,"  ",6\n')
    assert error(quoted).line == 3 and "empty item field" in str(error(quoted))


def test_empty_id_headerless_names_the_position(tmp_path):
    err = error(write(tmp_path, "h.csv", "1,2,3\n4,,6\n"))
    assert err.line == 2 and "item (field 2)" in str(err)


def test_line_numbers_after_multiline_quoted_field_and_crlf(tmp_path):
    path = write(tmp_path, "q.csv", b'user,item,time,note\r\n1,2,3,"a\r\nb"\r\n4,5,6,c\r\n7,8,oops,d\r\n')
    err = error(path)
    assert err.line == 5 and err.value == "oops"


def test_line_numbers_in_gzip(tmp_path):
    path = write(tmp_path, "g.csv.gz", gzip.compress(b"user,item,rating\n1,2,3\n1,3,bad\n"))
    assert error(path).line == 3


def test_invalid_utf8_names_line_and_byte(tmp_path):
    path = write(tmp_path, "utf.csv", b"user,item,time\n1,2,3\n4,caf\xe9,6\n")
    err = error(path)
    message = str(err)
    assert f"{path}:3:" in message and "invalid UTF-8" in message and "0xe9" in message and "byte 6" in message


def test_binary_garbage(tmp_path):
    path = write(tmp_path, "bin.csv", b"user,item\n1,2\n\x00\x01\x02\xff")
    err = error(path)
    assert "looks like a binary file" in str(err) and err.line == 3


def test_other_non_text_inputs(tmp_path):
    assert "UTF-16" in str(error(write(tmp_path, "w.csv", "user,item\n1,2\n".encode("utf-16"))))
    assert "zip archive" in str(error(write(tmp_path, "z.csv", b"PK\x03\x04rest")))
    pq = tmp_path / "real.parquet"
    pl.DataFrame({"user": [1], "item": [2]}).write_parquet(pq)
    assert "format='parquet'" in str(error(write(tmp_path, "p.csv", pq.read_bytes())))


def test_truncated_gzip(tmp_path):
    packed = gzip.compress(b"user,item\n" + b"1,2\n" * 1000)
    err = error(write(tmp_path, "t.csv.gz", packed[: len(packed) // 2]))
    assert "truncated gzip" in str(err)
    with pytest.raises(DataError, match="gzip"):
        read_interactions(write(tmp_path, "c.csv.gz", b"\x1f\x8b\x08\x00" + b"garbage" * 10))


@pytest.mark.parametrize("cut", ["half", "footer", "middle"])
def test_truncated_or_corrupt_parquet(tmp_path, cut):
    good = tmp_path / "good.parquet"
    pl.DataFrame({"user": list(range(100)), "item": list(range(100))}).write_parquet(good)
    data = good.read_bytes()
    broken = {"half": data[: len(data) // 2], "footer": data[:-1],
              "middle": data[:8] + b"\x07" * (len(data) - 12) + data[-4:]}[cut]
    err = error(write(tmp_path, "bad.parquet", broken))
    assert "Parquet" in str(err) and ("truncated" in str(err) or "corrupt" in str(err))


def test_parquet_null_id_names_the_row(tmp_path):
    path = tmp_path / "n.parquet"
    pl.DataFrame({"user_id": [1, None, 3], "item_id": [1, 2, 3]}).write_parquet(path)
    err = error(path)
    assert "row 2" in str(err) and err.column == "user_id" and "empty user field" in str(err)


def test_parquet_unknown_column(tmp_path):
    path = tmp_path / "n.parquet"
    pl.DataFrame({"a": [1], "b": [2]}).write_parquet(path)
    err = error(path, columns={"user": "a", "item": "c"})
    assert "'c'" in str(err) and "'a', 'b'" in str(err)


def test_unknown_format_name(tmp_path):
    path = write(tmp_path, "x.csv", "user,item\n1,2\n")
    err = error(path, format="xls")
    assert "unknown format 'xls'" in str(err) and "parquet" in str(err)
    assert isinstance(err, ConfigError)  # an option error too


def test_bad_mapping_options(tmp_path):
    path = write(tmp_path, "x.csv", "user,item\n1,2\n")
    with pytest.raises(ConfigError, match="unknown canonical column 'usr'"):
        read_interactions(path, columns={"usr": 0, "item": 1})
    with pytest.raises(ConfigError, match="lacks 'item'"):
        read_interactions(path, columns={"user": 0})
    with pytest.raises(ConfigError, match="header=False"):
        read_interactions(path, columns={"user": "user", "item": "item"}, header=False)
    with pytest.raises(ConfigError, match="no column mapping"):
        read_interactions(write(tmp_path, "p.txt", "1 2\n"), format="pairs", columns={"user": 0, "item": 1})


def test_dat_errors(tmp_path):
    path = write(tmp_path, "r.dat", "1::2::5::978300760\n1::3::x::978300761\n")
    err = error(path)
    assert err.line == 2 and err.value == "x" and "rating (field 3)" in str(err)
    short = error(write(tmp_path, "s.dat", "1::2::5::978300760\n1::3::978300761\n"))
    assert short.line == 2 and "too few fields" in str(short) and "'::'" in str(short)


def test_pairs_errors(tmp_path):
    err = error(write(tmp_path, "p.txt", "1 2\n1 3\n\n1 4 5\n"), format="pairs")
    assert err.line == 4 and "too many fields" in str(err) and "'1 4 5'" in str(err)
    err = error(write(tmp_path, "q.txt", "1 2\n7\n"), format="pairs")
    assert err.line == 2 and "too few fields" in str(err)


def test_sequences_user_without_items(tmp_path):
    err = error(write(tmp_path, "s.txt", "1 2 3\n2\n3 4 5 6\n"), format="sequences")
    assert err.line == 2 and "user id followed by at least one item" in str(err)


def test_sessions_empty_item(tmp_path):
    err = error(write(tmp_path, "s.txt", "1,2\n3,4\n5,,6\n"), format="sessions")
    assert err.line == 3 and "empty item field" in str(err) and "item 2" in str(err)


def test_undetectable_format(tmp_path):
    with pytest.raises(DataError, match="cannot tell the format"):
        detect_format(write(tmp_path, "one.txt", "5\n6\n"))


def test_single_column_csv(tmp_path):
    err = error(write(tmp_path, "one.csv", "5\n6\n"))
    assert "separator" in str(err) and err.line == 1


@pytest.mark.realdata
def test_real_latin1_file_is_reported(dataset):
    """ml-1m/movies.dat is ISO-8859-1 metadata, not interactions: the reader must say so clearly."""
    path = dataset("ml-1m/movies.dat")
    err = error(path)
    assert "invalid UTF-8" in str(err) and err.line is not None and err.line > 1


def test_random_garbage_only_raises_seqrec_errors(tmp_path):
    rng = random.Random(7)
    pieces = [b"1", b"2", b",", b";", b"\t", b" ", b"\n", b"\r\n", b'"', b"x", b"::", b"2016-05-09", b"\xc3\xa9", b""]
    for trial in range(120):
        content = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        for fmt in (None, "csv", "dat", "pairs", "sequences", "sessions", "inter"):
            path = write(tmp_path, f"g{trial}.txt", content)
            with contextlib.suppress(SeqrecError):  # anything else (polars, gzip, unicode, index errors) fails
                read_interactions(path, format=fmt)


@pytest.mark.parametrize("quoted", [False, True])
def test_planted_errors_are_found_on_their_line(tmp_path, quoted):
    """Random tables with blank lines, CRLF and one planted problem: the error names the planted line."""
    rng = random.Random(11 + quoted)
    for trial in range(40):
        sep, eol = rng.choice([",", ";", "\t", "|"]), rng.choice(["\n", "\r\n"])
        rows = [[f'"u{i % 7}"' if quoted and i % 5 == 0 else str(i % 7), str(rng.randint(1, 99)),
                 str(rng.choice([1, 2.5, 5])), str(1000 + i)] for i in range(rng.randint(1, 400))]
        at, kind = rng.randrange(len(rows)), rng.choice(["few", "many", "time", "rating", "empty"])
        row = rows[at]
        {"few": row.pop, "many": lambda r=row: r.append("9"), "time": lambda r=row: r.__setitem__(3, "soon"),
         "rating": lambda r=row: r.__setitem__(2, "good"), "empty": lambda r=row: r.__setitem__(1, "")}[kind]()
        lines = ["user_id", "item_id", "rating", "timestamp"]
        lines = [sep.join(lines)]
        for i, fields in enumerate(rows):
            lines.extend([""] * (rng.random() < 0.05))
            planted = len(lines) + 1 if i == at else locals().get("planted")
            lines.append(sep.join(fields))
        path = write(tmp_path, f"t{trial}.csv", eol.join(lines) + eol * rng.randint(0, 2))
        err = error(path)
        assert err.line == planted, (trial, kind, str(err))
