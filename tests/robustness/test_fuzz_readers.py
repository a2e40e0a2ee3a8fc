"""Generated files into the interaction readers (`read_interactions` and the `seqrec.data` modules under it: `rawtext`,
`sniffing`, `diagnosis`, `typed_columns`).

Properties:
- a well-formed table (random delimiter, quoting, header or not, CRLF, BOM, blank lines, gzip, integer or text
  ids, huge fields) is read back exactly: the same rows, in order, ids of the same meaning;
- a ragged row, a truncated gzip stream, a file in another encoding, random bytes or text are either read or
  refused with a `DataError` naming the file (and the line, for a ragged row); never another exception;
- ids are never merged: two different id texts in the file are two different ids after reading.
"""

from __future__ import annotations

import gzip
import string

import polars as pl
import pytest
from fuzzing import fuzz
from hypothesis import event, given
from hypothesis import strategies as st

from seqrec.data.readers import FORMATS, read_interactions
from seqrec.errors import DataError, SeqrecError

SEPARATORS = [",", ";", "\t", "|"]
BLANKS = "".join(c for c in map(chr, range(0x3001)) if c.isspace() and c not in "\x1c\x1d\x1e\x1f")  # Unicode
WORD = string.ascii_letters + string.digits + "_-.:/@"


def int_ids(max_size: int = 40):
    return st.lists(st.integers(-10 ** 12, 10 ** 12) | st.integers(0, 50), min_size=1, max_size=max_size)


def text_ids():
    """Ids with at least one letter (so the column is text), some of them non-ASCII."""
    word = st.text(WORD + "éßЖ中", min_size=0, max_size=12)
    return st.tuples(word, st.sampled_from("abcXYZéЖ"), word).map(lambda t: t[0] + t[1] + t[2])


@st.composite
def tables(draw, huge: bool = False):
    """(file bytes, separator given to the reader or None, expected rows [(user, item, time)], ids are ints)."""
    n = draw(st.integers(1, 30))
    integer = draw(st.booleans())
    ids = st.integers(-10 ** 12, 10 ** 12) if integer else text_ids()
    users = draw(st.lists(ids, min_size=n, max_size=n))
    items = draw(st.lists(ids, min_size=n, max_size=n))
    if huge and not integer:
        items[draw(st.integers(0, n - 1))] = "x" * draw(st.integers(10_000, 300_000))
    times = draw(st.lists(st.integers(0, 2 ** 40), min_size=n, max_size=n))
    sep = draw(st.sampled_from(SEPARATORS))
    quote_all = draw(st.booleans())
    header = draw(st.booleans())
    newline = draw(st.sampled_from(["\n", "\r\n"]))

    def field(value) -> str:
        text = str(value)
        if quote_all or (sep in text) or draw(st.integers(0, 9)) == 0:
            return '"' + text.replace('"', '""') + '"'
        return text

    lines = [sep.join(["user_id", "item_id", "timestamp"])] if header else []
    for row in zip(users, items, times):
        lines.append(sep.join(field(v) for v in row))
        if draw(st.integers(0, 12)) == 0:
            lines.append("")                                        # a blank line
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    raw = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + text.encode()
    if draw(st.booleans()):
        raw = gzip.compress(raw)
    given_sep = sep if draw(st.booleans()) else None
    return raw, given_sep, list(zip(users, items, times)), integer


def read(tmp_path_factory, raw: bytes, name: str = "log.csv", **options):
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(raw)
    return path, read_interactions(path, **options)


@fuzz(120)
@given(case=tables())
def test_well_formed_tables_are_read_back_exactly(tmp_path_factory, case):
    raw, sep, expected, integer = case
    _, data = read(tmp_path_factory, raw, separator=sep, format="csv")
    frame = data.frame
    assert frame.height == len(expected)
    got = frame.select("user", "item", "time").rows()
    if integer:
        assert frame.schema["user"] == pl.Int64 and frame.schema["item"] == pl.Int64
        assert got == expected
    else:
        assert got == [(str(u), str(i), t) for u, i, t in expected]
    event(f"{'int' if integer else 'text'} ids")


@fuzz(25)
@given(case=tables(huge=True))
def test_huge_fields_are_read_exactly_or_refused(tmp_path_factory, case):
    raw, sep, expected, integer = case
    try:
        _, data = read(tmp_path_factory, raw, separator=sep, format="csv")
    except DataError as error:
        assert "log.csv" in str(error)
        event("refused")
        return
    assert data.frame.select("user", "item", "time").rows() == [(str(u), str(i), t) if not integer else (u, i, t)
                                                                  for u, i, t in expected]
    event("accepted")


@fuzz(80)
@given(ids=st.lists(st.sampled_from(["7", "07", "007", "+7", "-0", "0", "1", "01", "12", "0012", "x1"]), min_size=1,
                    max_size=30),
       sep=st.sampled_from([",", "\t", " "]), fmt=st.sampled_from(["csv", "pairs"]))
def test_different_id_texts_stay_different_ids(tmp_path_factory, ids, sep, fmt):
    """Zero-padded codes ("007" beside "7") or signs ("+7", "-0") must not merge two ids into one."""
    if fmt == "csv":
        sep = "," if sep == " " else sep
    body = "".join(f"u{n % 3}{sep}{item}\n" for n, item in enumerate(ids))
    _, data = read(tmp_path_factory, body.encode(), name="log.txt", format=fmt, separator=sep,
                   **({"header": False} if fmt == "csv" else {}))
    items = data.frame["item"].to_list()
    assert len(items) == len(ids)
    pairs = set(zip(ids, items))
    assert len({item for _, item in pairs}) == len(set(ids)), sorted(pairs, key=str)  # one id per distinct text
    assert all(str(item) == text or int(text) == item for text, item in pairs)


@st.composite
def ragged(draw):
    """(file bytes, 1-based line of the row with a field too many or too few)."""
    n = draw(st.integers(3, 30))
    sep = draw(st.sampled_from(SEPARATORS))
    rows = [[f"u{draw(st.integers(0, 9))}", f"i{draw(st.integers(0, 99))}", str(draw(st.integers(0, 10 ** 9)))]
            for _ in range(n)]
    bad = draw(st.integers(1, n - 1))
    if draw(st.booleans()):
        rows[bad] = rows[bad] + ["extra"]
    else:
        rows[bad] = rows[bad][:2]
    header = draw(st.booleans())
    lines = ([sep.join(["user", "item", "time"])] if header else []) + [sep.join(r) for r in rows]
    return ("\n".join(lines) + "\n").encode(), bad + 1 + header, sep


@fuzz(80)
@given(case=ragged())
def test_a_ragged_row_is_named_by_its_line(tmp_path_factory, case):
    raw, line, sep = case
    path = tmp_path_factory.mktemp("fuzz") / "ragged.csv"
    path.write_bytes(raw)
    try:
        read_interactions(path, format="csv", separator=sep)
    except DataError as error:
        assert error.line == line and "fields" in error.reason and error.path == str(path), str(error)
    else:
        raise AssertionError("a ragged row was read")


@fuzz(60)
@given(case=tables(), cut=st.floats(0.0, 0.999))
def test_a_truncated_gzip_file_is_refused(tmp_path_factory, case, cut):
    raw, sep, _, _ = case
    packed = raw if raw[:2] == b"\x1f\x8b" else gzip.compress(raw)
    truncated = packed[:max(2, int(len(packed) * cut))]
    try:
        read(tmp_path_factory, truncated, name="log.csv.gz", separator=sep, format="csv")
    except DataError as error:
        assert "log.csv.gz" in str(error) and "gzip" in str(error), str(error)
    else:
        raise AssertionError("a truncated gzip file was read")


@fuzz(60)
@given(case=tables(), encoding=st.sampled_from(["latin-1", "cp1252", "utf-16", "utf-16-le", "utf-8"]))
def test_other_encodings_are_read_right_or_refused(tmp_path_factory, case, encoding):
    raw, sep, expected, integer = case
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8-sig")
    try:
        encoded = text.encode(encoding)
    except UnicodeEncodeError:
        event("not encodable")
        return
    try:
        _, data = read(tmp_path_factory, encoded, separator=sep, format="csv")
    except DataError as error:
        assert "log.csv" in str(error)
        event("refused")
        return
    assert encoded.decode("utf-8").lstrip("\ufeff") == text                 # read only when it was UTF-8 text
    got = data.frame.select("user", "item", "time").rows()
    assert got == (expected if integer else [(str(u), str(i), t) for u, i, t in expected])
    event("accepted")


@fuzz(150)
@given(raw=st.one_of(st.binary(max_size=2000), st.text(max_size=400).map(str.encode),
                     st.lists(st.text(string.printable, max_size=40), max_size=20).map("\n".join).map(str.encode)),
       fmt=st.none() | st.sampled_from(FORMATS), name=st.sampled_from(["log.csv", "log.txt", "log.dat", "x.gz"]))
def test_random_bytes_are_read_or_refused_with_a_data_error(tmp_path_factory, raw, fmt, name):
    try:
        read(tmp_path_factory, raw, name=name, format=fmt)
    except SeqrecError as error:
        assert name in str(error)
        event("refused")
    else:
        event("accepted")


@pytest.mark.parametrize("raw", [b"\xef\xbb\xbf", b"\xef\xbb\xbf\n\n", b"\xef\xbb\xbf \t\r\n"])
@pytest.mark.parametrize("fmt", [None, "csv", "tsv", "pairs"])
def test_a_file_of_only_a_byte_order_mark_is_empty(tmp_path, raw, fmt):
    """Regression (fuzzing): a file holding only a UTF-8 BOM (and blanks) raised IndexError."""
    path = tmp_path / "log.csv"
    path.write_bytes(raw)
    with pytest.raises(DataError, match="file is empty") as caught:
        read_interactions(path, format=fmt)
    assert str(path) in str(caught.value)


def test_zero_padded_codes_beside_plain_numbers_stay_apart(tmp_path):
    """Regression (fuzzing): "07" and "7" (and "+7", "-0" beside "0") were both read as the integer 7, merging
    two items into one without a word; beyond the sampled lines too."""
    rows = [f"u{n},{n + 1},{1000 + n}\n" for n in range(2000)]                 # a long plain integer prefix
    path = tmp_path / "codes.csv"
    path.write_text("user,item,time\n" + "".join(rows) + "u1,07,5000\nu2,7,5001\nu3,+7,5002\n")
    items = read_interactions(path).frame["item"]
    assert items.dtype == pl.String and items.to_list()[-3:] == ["07", "7", "+7"]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1 0\n1 -0\n2 5\n")
    assert read_interactions(pairs, format="pairs").frame["item"].to_list() == ["0", "-0", "5"]
    # zero-padded codes that merge nothing stay integers, as do plain ones
    padded = tmp_path / "padded.csv"
    padded.write_text("user,item\n1,001\n1,002\n2,010\n")
    assert read_interactions(padded).frame["item"].to_list() == [1, 2, 10]
    assert read_interactions(tmp_path / "codes.csv").frame["user"].dtype == pl.String


def id_columns(n: int):
    """A Parquet id column of a random type: ints, floats (whole, fractional, huge, nan), text, bools, nulls."""
    return st.one_of(
        st.lists(st.integers(-2 ** 63, 2 ** 63 - 1), min_size=n, max_size=n),
        st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=n, max_size=n),
        st.lists(st.integers(-10 ** 6, 10 ** 6).map(float), min_size=n, max_size=n),
        st.lists(st.text(max_size=8), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.lists(st.none() | st.integers(0, 9), min_size=n, max_size=n),
    )


@fuzz(80)
@given(data=st.data())
def test_parquet_id_columns_of_any_type_keep_their_meaning_or_are_refused(tmp_path_factory, data):
    n = data.draw(st.integers(1, 12), label="rows")
    users, items = data.draw(id_columns(n), label="users"), data.draw(id_columns(n), label="items")
    path = tmp_path_factory.mktemp("fuzz") / "log.parquet"
    try:
        pl.DataFrame({"user": users, "item": items, "time": list(range(n))}, strict=False).write_parquet(path)
    except Exception:  # noqa: BLE001 - a frame polars itself cannot build is no input of ours
        event("not writable")
        return
    try:
        frame = read_interactions(path).frame
    except DataError as error:
        assert "log.parquet" in str(error)
        event("refused")
        return
    event("accepted")
    for name, values in (("user", users), ("item", items)):
        got = frame[name].to_list()
        values = [v.strip(BLANKS) if isinstance(v, str) else v for v in values]  # text ids lose their blanks
        assert len(got) == n and None not in got
        assert len(set(got)) == len(set(values)), (values, got)                 # nothing else merged
        for given_value, read_value in zip(values, got):                      # the same value, or its text
            as_int = isinstance(given_value, str) and given_value.lstrip("+-").isdigit() and \
                given_value.isascii() and read_value == int(given_value)       # text ids that are all integers
            assert read_value == given_value or str(read_value) == str(given_value) or as_int, \
                (given_value, read_value)


@pytest.mark.parametrize(("items", "message"), [([1.0, 9.3e18], "not a whole number within 64 bits"),
                                               ([1.0, float("nan")], "not a whole number"),
                                               ([2.0, 1.5], "not a whole number"),
                                               ([True, False], "holds booleans")])
def test_parquet_ids_that_are_no_integer_are_refused(tmp_path, items, message):
    """Regression (fuzzing): a float id of 9.3e18 raised polars' InvalidOperationError (a traceback); 1.5 and
    NaN became the text ids "1.5" and "NaN", and booleans the ids "true" / "false"."""
    path = tmp_path / "log.parquet"
    pl.DataFrame({"user": [1, 2], "item": items, "time": [0, 1]}).write_parquet(path)
    with pytest.raises(DataError, match=message) as caught:
        read_interactions(path)
    assert "log.parquet" in str(caught.value) and "column 'item'" in str(caught.value)
    pl.DataFrame({"user": [1, 2], "item": [3.0, -4.0], "time": [0, 1]}).write_parquet(path)
    assert read_interactions(path).frame["item"].to_list() == [3, -4]          # whole floats are integers
