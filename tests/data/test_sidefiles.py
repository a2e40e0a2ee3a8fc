"""User-id lists and item titles go through the interaction readers: the same quoting, BOM, gzip, separator and
header handling, and the same messages (file, line, column, value, expected) for a bad line."""

from __future__ import annotations

import gzip

import polars as pl
import pytest

from seqrec.data.readers import read_interactions
from seqrec.data.sidefiles import read_titles, read_user_ids
from seqrec.errors import DataError


def test_user_ids_from_a_csv_take_the_user_column_and_its_quoting(tmp_path):
    users = tmp_path / "users.csv"
    users.write_text('name,user\n"Doe, Jane","u,1"\nx,u2\n')
    assert read_user_ids(users) == ["u,1", "u2"]
    users.write_text("name,user\nx,u2\nonly-a-name\n")
    with pytest.raises(DataError) as error:
        read_user_ids(users)
    assert error.value.line == 3 and error.value.value == "only-a-name"
    assert "users.csv:3: too few fields" in str(error.value) and "2 fields like the header" in str(error.value)
    users.write_text("uid;score\n7;1\n;2\n")                     # an empty id: the line and the column
    with pytest.raises(DataError, match=r"users.csv:3: empty user id; column 'uid'"):
        read_user_ids(users)


def test_user_ids_from_a_text_file_are_whole_lines(tmp_path):
    users = tmp_path / "users.txt.gz"
    users.write_bytes(gzip.compress(b"\xef\xbb\xbfu1\r\n  \r\nJane Doe\n42\n"))   # BOM, CRLF, a blank line
    assert read_user_ids(users) == ["u1", "Jane Doe", "42"]
    (tmp_path / "bin.txt").write_bytes(b"u1\n\x00\x01")
    with pytest.raises(DataError, match="binary"):
        read_user_ids(tmp_path / "bin.txt")


def test_user_ids_from_parquet(tmp_path):
    pl.DataFrame({"score": [1, 2], "user": [5, 3]}).write_parquet(tmp_path / "u.parquet")
    assert read_user_ids(tmp_path / "u.parquet") == [5, 3]
    (tmp_path / "cut.parquet").write_bytes((tmp_path / "u.parquet").read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated Parquet"):
        read_user_ids(tmp_path / "cut.parquet")


def test_titles_from_movielens_dat_latin1(tmp_path):
    movies = tmp_path / "movies.dat"
    movies.write_bytes("1::Caf\xe9 (1995)::Drama\n2::Heat (1995)::Action|Crime\n".encode("latin-1"))
    assert read_titles(movies) == {"1": "Café (1995)", "2": "Heat (1995)"}
    movies.write_text("1::Heat (1995)::Action\n2\n")
    with pytest.raises(DataError, match=r"movies.dat:2: too few fields: .* separated by '::'.*like line 1"):
        read_titles(movies)


def test_titles_from_a_pipe_file_without_header_and_from_a_csv(tmp_path):
    items = tmp_path / "u.item"
    items.write_text("1|Toy Story (1995)|01-Jan-1995||http://x|0|1\n2|GoldenEye (1995)|01-Jan-1995||http://y|1|0\n")
    assert read_titles(items) == {"1": "Toy Story (1995)", "2": "GoldenEye (1995)"}
    meta = tmp_path / "items.csv"
    meta.write_text('genre,item_id,title\nx,a1,"American President, The (1995)"\ny,a2,Heat\n')
    assert read_titles(meta) == {"a1": "American President, The (1995)", "a2": "Heat"}
    meta.write_text("item_id\na1\na2\n")
    with pytest.raises(DataError, match="needs an id column and a title column"):
        read_titles(meta)


@pytest.mark.realdata
def test_titles_of_the_real_movielens_files(dataset):
    ml100k = read_titles(dataset("ml-100k/u.item"))
    assert len(ml100k) == 1682 and ml100k["1"] == "Toy Story (1995)"
    ml1m = read_titles(dataset("ml-1m/movies.dat"))
    assert len(ml1m) == 3883 and ml1m["1193"] == "One Flew Over the Cuckoo's Nest (1975)"
    assert "Misérables, Les (1995)" in ml1m.values()                                   # ISO-8859-1 read as such


def test_a_short_line_is_compared_with_the_first_line(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("1,2,3\n4,5,6\n7,8\n")
    with pytest.raises(DataError, match=r"log.csv:3: too few fields.*expected 3 fields like line 1"):
        read_interactions(log)
