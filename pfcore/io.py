"""Reading source tables (CSV, Parquet file or directory, JSON Lines) as normalised Arrow batches.

Everything streams: readers yield record batches of bounded size, so ingest can profile and
write inputs far larger than memory. Every failure becomes an ``InputError`` that names the file,
the column where known, and the problem.

Normalisation (the same for every format, so a CSV and its Parquet copy ingest alike):

* dictionary columns are decoded; ``large_string`` -> ``string``; ``float16`` -> ``float32``;
* NaN in float columns becomes null (pushforward has one notion of missing); an infinity is an
  ``InputError`` naming the column (no quantile transform can place it);
* CSV dialect: the delimiter is detected from the first lines (comma, tab, semicolon, pipe:
  the one that splits every line into the same number of fields, more than one) unless given;
  the quote character defaults to ``"``; UTF-8 with or without a byte-order mark is read as is,
  any other encoding (``encoding="latin-1"``) is transcoded. What was detected is reported in
  ``SourceReader.dialect`` and ``SourceReader.guesses`` (ingest writes both to the manifest and
  the schema). A file with NUL bytes in its first 8 KB is refused as binary.
* CSV null tokens: ``DEFAULT_NULL_TOKENS`` (``""``, ``NA``, ``N/A``, ``null``, ``NULL``, ``-``,
  ``?``, ``NaN``; configurable) are null in every column and every block of the file;
* CSV and JSON Lines timestamps: ISO 8601 date-times are parsed by Arrow's inference; a text
  column whose values are all ISO date-times (mixed UTC offsets, fractional seconds varying
  between rows) is parsed to ``timestamp[us, tz=UTC]`` (values without an offset, in a column
  with offsets, are read as UTC and the guess is reported), or to ``timestamp[us]`` when no
  value has an offset;
* a CSV column whose later values do not fit the type Arrow inferred from the first block
  (numbers, then text) is re-read as **string** (so it becomes categorical) and listed in the
  manifest under ``string_fallback_columns``; bytes that are not valid UTF-8 are an error naming
  the column (pass ``encoding="latin-1"`` or similar to transcode);
* column names must be non-empty and unique (an empty or blank header field, or a repeated name,
  is an InputError naming the column's position): they become file names and MLflow metric
  names downstream, where an empty name is invalid. The one exception is a first column without
  a name, the row index pandas writes: it is named ``Unnamed: 0``, as pandas reads it back;
* decimal columns keep their exact type: they are modelled as floats (the scale is in the
  schema's ``arrow_type`` and ``decimals``) and decoded back to the same decimal type;
* binary, nested, time-of-day and duration columns are not supported (InputError naming them).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pfcore.errors import InputError, printable

__all__ = [
    "SourceReader",
    "open_source",
    "read_table",
    "read_dataset",
    "detect_format",
    "source_checksum",
    "DEFAULT_NULL_TOKENS",
    "CSV_DELIMITERS",
    "detect_delimiter",
    "plain_table",
]

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".csv.bz2", ".csv.zst")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz")
DEFAULT_BLOCK_BYTES = 4 << 20
#: Cells read as null in every CSV column (see the module docstring); override per ingest.
DEFAULT_NULL_TOKENS: tuple[str, ...] = ("", "NA", "N/A", "null", "NULL", "-", "?", "NaN")
#: Delimiters tried by :func:`detect_delimiter`, in order of preference on a tie.
CSV_DELIMITERS = (",", "\t", ";", "|")
_SNIFF_BYTES = 64 << 10
_SNIFF_LINES = 200
#: Longest excerpt of a parser's message quoted in an error (it may hold a whole binary row).
_MAX_QUOTE = 300


def _name(p: Path) -> str:
    return p.name.lower()


def detect_format(path: Path) -> str:
    """'csv' | 'parquet' | 'jsonl' from the path (a directory is a Parquet dataset)."""
    if path.is_dir():
        return "parquet"
    n = _name(path)
    if n.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if n.endswith(CSV_SUFFIXES):
        return "csv"
    if n.endswith(JSONL_SUFFIXES):
        return "jsonl"
    raise InputError(
        "unknown file type (expected .csv/.tsv, .parquet or .jsonl/.ndjson, "
        "or a directory of Parquet files)",
        path=path,
    )


def source_files(path: Path) -> list[Path]:
    """The files making up a source: itself, or a directory's Parquet files in sorted order.

    Names starting with ``_`` or ``.`` are skipped, as pyarrow.dataset does (staging folders,
    ``_SUCCESS`` markers).
    """
    if not path.exists():
        raise InputError("does not exist", path=path)
    if path.is_file():
        return [path]
    files = []
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).parts
        if any(part.startswith(("_", ".")) for part in rel):
            continue
        if p.is_file() and _name(p).endswith(PARQUET_SUFFIXES):
            files.append(p)
    if not files:
        raise InputError("directory holds no Parquet files", path=path)
    return files


def source_checksum(path: Path) -> tuple[str, int]:
    """sha256 of the source content (a directory: of each file's relative path and content)."""
    files = source_files(path)
    total = 0
    if len(files) == 1 and files[0] == path:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
                total += len(chunk)
        return h.hexdigest(), total
    h = hashlib.sha256()
    for f in files:
        fh_hash = hashlib.sha256()
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                fh_hash.update(chunk)
                total += len(chunk)
        h.update(f.relative_to(path).as_posix().encode("utf-8") + b"\0" + fh_hash.digest())
    return h.hexdigest(), total


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------


def normal_type(t: pa.DataType, *, path: Path | None, column: str) -> pa.DataType:
    if pa.types.is_dictionary(t):
        return normal_type(t.value_type, path=path, column=column)
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_float16(t):
        return pa.float32()
    ok = (
        pa.types.is_boolean(t)
        or pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_decimal(t)
        or pa.types.is_string(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_date(t)
        or pa.types.is_null(t)
    )
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        raise InputError(
            "holds bytes that are not valid UTF-8 text (re-encode the file as UTF-8, or pass "
            "encoding='latin-1' or the file's encoding)",
            path=path,
            column=column,
        )
    if not ok:
        raise InputError(
            f"unsupported type {t} (supported: bool, integers, floats, decimals, strings, "
            "timestamps, dates)",
            path=path,
            column=column,
        )
    return t


def plain_table(table: pa.Table) -> pa.Table:
    """An in-memory table with the column types ingest gives (dictionaries decoded, large
    strings as strings, float16 as float32), so the Python API takes what a file may hold: a
    pandas categorical arrives as a dictionary column. An unsupported type is an InputError
    naming the column."""
    target = pa.schema(
        [pa.field(f.name, normal_type(f.type, path=None, column=f.name)) for f in table.schema]
    )
    if target.equals(table.schema.remove_metadata()):
        return table
    return table.cast(target)


#: The name given to a first column whose header is empty (pandas' name for it).
INDEX_NAME = "Unnamed: 0"


def normal_schema(schema: pa.Schema, path: Path) -> pa.Schema:
    names = schema.names
    if not names:
        raise InputError("has no columns", path=path)
    blank = [i + 1 for i, n in enumerate(names) if not n.strip()]
    if blank == [1] and len(names) > 1 and INDEX_NAME not in names:
        # a row index written by pandas (``DataFrame.to_csv``) has no header: named as pandas
        # reads it back (the reader records the guess)
        names = [INDEX_NAME, *names[1:]]
        schema = pa.schema([f.with_name(n) for f, n in zip(schema, names, strict=True)])
        blank = []
    if blank:
        raise InputError(
            f"column #{blank[0]} (of {len(names)}) has an empty name in the header; give every "
            "column a unique, non-blank name",
            path=path,
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(
            f"duplicate column names {dupes}; give every column a unique name",
            path=path,
            column=dupes[0],
        )
    return pa.schema(
        [pa.field(f.name, normal_type(f.type, path=path, column=f.name)) for f in schema]
    )


def normalise_batch(batch: pa.RecordBatch, schema: pa.Schema, path: Path) -> pa.RecordBatch:
    cols = []
    for f, arr in zip(schema, batch.columns, strict=True):
        if arr.type != f.type:
            arr = arr.cast(f.type)
        if pa.types.is_floating(f.type) and len(arr):
            if pc.any(pc.is_inf(arr)).as_py():
                raise InputError(
                    "contains infinite values (replace them with null or finite values)",
                    path=path,
                    column=f.name,
                )
            nan = pc.is_nan(arr)
            if pc.any(nan).as_py():
                arr = pc.if_else(nan, pa.scalar(None, type=f.type), arr)
        cols.append(arr)
    return pa.RecordBatch.from_arrays(cols, schema=schema)


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


class _RetryAsString(Exception):
    """Re-read ``column`` as text; ``plain``: and do not parse it as ISO date-times either."""

    def __init__(self, column: str, *, plain: bool = False) -> None:
        self.column = column
        self.plain = plain


_ISO_DATETIME = (
    r"^\s*\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?)?"
    r"\s*(?:Z|z|[+-]\d{2}(?::?\d{2})?)?\s*$"
)
_ISO_OFFSET = r"(?:Z|z|[+-]\d{2}(?::?\d{2})?)\s*$"
_ISO_TIME = r"\d[T ]\d{2}:\d{2}"


def _iso_timezone(arr: pa.Array) -> str | None | bool:
    """How a text column's values read as ISO date-times: ``"UTC"`` (some carry an offset),
    ``None`` (date-times without offsets) or ``False`` (not date-times: keep it text)."""
    valid = arr.drop_null()
    if len(valid) == 0:
        return False
    if not pc.all(pc.match_substring_regex(valid, _ISO_DATETIME)).as_py():
        return False
    if not pc.any(pc.match_substring_regex(valid, _ISO_TIME)).as_py():
        return False  # plain dates: Arrow's own inference handles those
    return "UTC" if pc.any(pc.match_substring_regex(valid, _ISO_OFFSET)).as_py() else None


def _parse_iso(arr: pa.Array, tz: str | None, column: str) -> pa.Array:
    """ISO date-times with any mix of offsets to ``timestamp[us, tz]`` (UTC instants)."""
    import pandas as pd

    if not pc.all(pc.match_substring_regex(arr.drop_null(), _ISO_DATETIME)).as_py():
        raise _RetryAsString(column, plain=True)
    text = pc.replace_substring_regex(pc.utf8_trim_whitespace(arr), r"\s+([+-]\d|Z|z)", r"\1")
    values = pd.Series(text.to_pandas(), dtype=object)
    # Values with and without an offset are parsed apart: in one call pandas applies the first
    # value's offset to the naive ones, shifting them by hours.
    aware = values.str.contains(_ISO_OFFSET, regex=True, na=False).to_numpy(dtype=bool)
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
    try:
        for mask in (aware, ~aware):
            part = values[mask & values.notna().to_numpy()]
            if len(part):
                out[part.index] = pd.to_datetime(part, utc=True, format="ISO8601")
    except (ValueError, TypeError, OverflowError):
        raise _RetryAsString(column, plain=True) from None
    ts = pa.array(out, type=pa.timestamp("us", tz="UTC"), from_pandas=True)
    return ts if tz is not None else ts.cast(pa.timestamp("us"))


#: Common non-ISO date layouts: (a regex every value's date part must match, the strptime
#: formats it may be, in the order taken when several read every value). Month-first comes
#: before day-first, as pandas and spreadsheets in the US read ``03/04/2021``.
_DATE_LAYOUTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"\d{1,2}/\d{1,2}/\d{4}", ("%m/%d/%Y", "%d/%m/%Y")),
    (r"\d{1,2}/\d{1,2}/\d{2}", ("%m/%d/%y", "%d/%m/%y")),
    (r"\d{1,2}-\d{1,2}-\d{4}", ("%m-%d-%Y", "%d-%m-%Y")),
    (r"\d{1,2}-\d{1,2}-\d{2}", ("%m-%d-%y", "%d-%m-%y")),
    (r"\d{1,2}\.\d{1,2}\.\d{4}", ("%d.%m.%Y",)),
    (r"\d{4}/\d{1,2}/\d{1,2}", ("%Y/%m/%d",)),
    (r"\d{1,2}-[A-Za-z]{3}-\d{4}", ("%d-%b-%Y",)),
    (r"\d{1,2} [A-Za-z]{3} \d{4}", ("%d %b %Y",)),
    (r"[A-Za-z]{3} \d{1,2}, \d{4}", ("%b %d, %Y",)),
    (r"[A-Za-z]{3}-\d{4}", ("%b-%Y",)),
)
#: The time of day that may follow a layout's date, the same on every value.
_TIME_LAYOUTS: tuple[tuple[str, str], ...] = (
    ("", ""),
    (r" \d{1,2}:\d{2}", " %H:%M"),
    (r" \d{1,2}:\d{2}:\d{2}", " %H:%M:%S"),
    (r" \d{1,2}:\d{2}:\d{2} ?[AaPp][Mm]", " %I:%M:%S %p"),
    (r" \d{1,2}:\d{2} ?[AaPp][Mm]", " %I:%M %p"),
)
_NUMBER_TEXT = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
#: A number as spreadsheets export it: a currency sign, thousands separators, a percent sign.
_FORMATTED_NUMBER = "|".join(
    (
        r"^[$€£]?\s?[-+]?[$€£]?\d{1,3}(,\d{3})+(\.\d+)?\s?%?$",  # 84,835.00  $84,835.00
        r"^[$€£]\s?[-+]?\d+(\.\d+)?$",  # $120.50
        r"^[-+]?\d+(\.\d+)?\s?%$",  # 12.5%
    )
)
#: A text column whose values are at least this share numbers gets a guess saying which are not.
NUMBER_TEXT_SHARE = 0.9
_LAYOUT_HINT = r"^\s*[0-9A-Za-z]{1,4}[/.\- ][0-9A-Za-z]{1,4},?([/.\- ]\d{1,4})?( .*)?\s*$"


@dataclass(frozen=True)
class DateReading:
    """How a text column's values become timestamps: ISO 8601 (``layouts`` empty, ``tz`` the
    zone: "UTC" when some carry an offset) or strptime layouts, each with the pattern of the
    values it reads (one layout reads every value; several split them by pattern)."""

    tz: str | None = None
    layouts: tuple[tuple[str, str], ...] = ()


#: At most this many layouts in one column (``01-01-07`` beside ``2/14/2005``).
MAX_MIXED_LAYOUTS = 3


def _date_layout(arr: pa.Array) -> tuple[tuple[tuple[str, str], ...], bool] | None:
    """The strptime layouts that read every distinct value of ``arr`` (text) as a date or
    date-time, each with the pattern of the values it reads, and whether the other order of
    day and month read them all too (both at most 12: the month-first reading is taken).

    A column may mix layouts that differ in separators or year digits (a startups table's
    funding dates: ``01-01-07`` beside ``2/14/2005``), read in one order of day and month for
    all of them: where one layout's values decide the order (a day above 12), the others follow
    it. None when no order reads every value: a column mixing month-first and day-first rows
    stays text rather than reading either wrong."""
    import pandas as pd

    valid = pc.unique(pc.utf8_trim_whitespace(arr.drop_null()))
    if len(valid) == 0 or not pc.all(pc.match_substring_regex(valid, _LAYOUT_HINT)).as_py():
        return None
    if not pc.any(pc.match_substring_regex(valid, r"\d")).as_py():
        return None
    left = np.ones(len(valid), dtype=bool)
    groups: list[tuple[str, list[str], pd.Series]] = []  # (pattern, formats reading all, values)
    for date_re, formats in _DATE_LAYOUTS:
        for time_re, time_fmt in _TIME_LAYOUTS:
            pattern = f"^{date_re}{time_re}$"
            hit = left & np.asarray(pc.match_substring_regex(valid, pattern), dtype=bool)
            if not hit.any():
                continue
            left &= ~hit
            values = pd.Series(valid.filter(pa.array(hit)).to_pylist(), dtype=object)
            fits = [
                f + time_fmt
                for f in formats
                if pd.to_datetime(values, format=f + time_fmt, errors="coerce").notna().all()
            ]
            if not fits:
                return None
            groups.append((pattern, [f + time_fmt for f in formats], fits))  # type: ignore[arg-type]
    if left.any() or not groups or len(groups) > MAX_MIXED_LAYOUTS:
        return None
    # Order 0 is each pattern's first format (month first), order 1 its second (day first).
    orders = [o for o in (0, 1) if all(_pick(formats, fits, o) for _, formats, fits in groups)]
    if not orders:
        return None
    chosen = tuple((pat, _pick(formats, fits, orders[0])) for pat, formats, fits in groups)
    ambiguous = any(len(fits) > 1 for _, _, fits in groups) and len(orders) > 1
    return chosen, ambiguous  # type: ignore[return-value]


def _pick(formats: list[str], fits: list[str], order: int) -> str | None:
    """The format of ``order`` (0: the first, 1: the second) among ``formats`` when it reads
    every value; a pattern with one format reads in either order."""
    if len(formats) == 1:
        return fits[0] if fits else None
    return formats[order] if formats[order] in fits else None


def _parse_layout(arr: pa.Array, layouts: tuple[tuple[str, str], ...], column: str) -> pa.Array:
    """Text in strptime ``layouts`` to ``timestamp[us]`` (several: each value by the layout
    whose pattern it matches); a value none reads sends the column back to text
    (:class:`_RetryAsString`)."""
    import pandas as pd

    trimmed = pc.utf8_trim_whitespace(arr)
    values = pd.Series(trimmed.to_pandas(), dtype=object)
    try:
        if len(layouts) == 1:
            out = pd.to_datetime(values, format=layouts[0][1], errors="raise")
        else:
            out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
            todo = values.notna().to_numpy()
            for pattern, layout in layouts:
                hit = todo & np.asarray(
                    pc.fill_null(pc.match_substring_regex(trimmed, pattern), False), dtype=bool
                )
                if hit.any():
                    out[hit] = pd.to_datetime(values[hit], format=layout, errors="raise")
                todo &= ~hit
            if todo.any():
                raise ValueError("a value no layout reads")
    except (ValueError, TypeError, OverflowError):
        raise _RetryAsString(column, plain=True) from None
    return pa.array(out.astype("datetime64[us]"), type=pa.timestamp("us"), from_pandas=True)


def _number_text(arr: pa.Array) -> pa.Array:
    """Which values of text ``arr`` are numbers, plain (after trimming) or as spreadsheets
    format them (``_FORMATTED_NUMBER``)."""
    trimmed = pc.utf8_trim_whitespace(arr)
    plain = pc.match_substring_regex(trimmed, _NUMBER_TEXT)
    return pc.or_(plain, pc.match_substring_regex(trimmed, _FORMATTED_NUMBER))


def _blank_to_null(arr: pa.Array) -> pa.Array:
    """Values of spaces only are missing: a spreadsheet's blank cell in a column of numbers
    (Telco churn's `TotalCharges` holds `' '` on the 11 rows of new customers)."""
    blank = pc.equal(pc.utf8_trim_whitespace(arr), "")
    return pc.if_else(blank, pa.scalar(None, arr.type), arr)


def _parse_number_text(arr: pa.Array, column: str) -> pa.Array:
    """Numbers written as text (``$84,835.00 ``, ``1,234``, ``12.5%``, `` 43``) to float64:
    the currency sign, thousands separators, percent sign and spaces dropped (``12.5%`` is
    12.5), values of spaces only missing; a value that is not such a number sends the column
    back to text (:class:`_RetryAsString`)."""
    arr = _blank_to_null(arr)
    if not pc.all(_number_text(arr.drop_null())).as_py():
        raise _RetryAsString(column, plain=True)
    return pc.cast(pc.replace_substring_regex(arr, r"[$€£,%\s]", ""), pa.float64())


def _sniff_text(path: Path, encoding: str) -> str:
    """The first lines of a (possibly compressed) text file, decoded; binary is an InputError."""
    with pa.input_stream(str(path), compression="detect") as fh:
        head = fh.read(_SNIFF_BYTES)
    if b"\x00" in head[:8192]:
        raise InputError(
            "looks like a binary file, not CSV text (NUL bytes in its first 8 KB); if it is "
            "UTF-16 text, re-save it as UTF-8",
            path=path,
        )
    text = head.decode(
        "utf-8-sig" if encoding.lower().replace("-", "") == "utf8" else encoding, errors="replace"
    )
    if len(head) == _SNIFF_BYTES and "\n" in text:
        text = text[: text.rindex("\n")]  # drop a partial last line
    return text


def _trailing_header_field(text: str, delimiter: str, quote_char: str) -> list[str] | None:
    """The header's names without its last field when that field is empty and every sampled
    row has one field fewer: a header written with a trailing delimiter (the Wisconsin breast
    cancer CSV ends its header with `fractal_dimension_worst,` and no row with a comma), which
    the CSV reader refuses as "Expected 33 columns, got 32". None otherwise."""
    import csv
    import io

    try:
        reader = csv.reader(io.StringIO(text), delimiter=delimiter, quotechar=quote_char)
        rows = [r for r in itertools.islice(reader, _SNIFF_LINES) if r]
    except csv.Error:  # the reader's own message is clearer: leave it to that
        return None
    if len(rows) < 2 or len(rows[0]) < 2 or rows[0][-1].strip():
        return None
    if all(len(r) == len(rows[0]) - 1 for r in rows[1:]):
        return rows[0][:-1]
    return None


def detect_delimiter(text: str, quote_char: str = '"') -> tuple[str, str]:
    """(delimiter, why) for CSV text: the candidate that splits every sampled line into the
    same number of fields, more than one; the most fields wins, then ``CSV_DELIMITERS`` order.

    A one-column file has no delimiter to find: comma, said so in ``why``.
    """
    import csv as pycsv

    lines = [ln for ln in text.splitlines()[:_SNIFF_LINES] if ln.strip()]
    if not lines:
        return ",", "no lines to detect a delimiter from; comma assumed"
    best: tuple[int, str] | None = None
    for d in CSV_DELIMITERS:
        counts = {len(r) for r in pycsv.reader(lines, delimiter=d, quotechar=quote_char)}
        if len(counts) == 1 and (n := counts.pop()) > 1 and (best is None or n > best[0]):
            best = (n, d)
    if best is None:
        return ",", (
            f"no delimiter of {', '.join(map(repr, CSV_DELIMITERS))} splits the first "
            f"{len(lines)} lines evenly; read as comma-separated"
        )
    n, d = best
    return d, f"delimiter {d!r} detected ({n} fields on each of the first {len(lines)} lines)"


_CSV_ERR = re.compile(r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to (\w+)")
_JSON_COL = re.compile(r"Column\((/[^)]*)\)")


@dataclass
class SourceReader:
    """Iterate a source's normalised batches; ``schema`` is known after ``open()``."""

    path: Path
    format: str
    batch_rows: int = 65_536
    encoding: str = "utf8"
    block_bytes: int = DEFAULT_BLOCK_BYTES
    string_columns: set[str] = field(default_factory=set)
    delimiter: str | None = None  # CSV: None detects it
    quote_char: str = '"'
    null_tokens: Sequence[str] = DEFAULT_NULL_TOKENS
    plain_text_columns: set[str] = field(default_factory=set)  # never parsed as date-times
    #: What was read and how (CSV: delimiter, quote, encoding, null tokens); set by ``batches``.
    dialect: dict = field(default_factory=dict)
    #: Human-readable statements of everything inferred rather than given.
    guesses: list[str] = field(default_factory=list)

    def batches(self) -> Iterator[pa.RecordBatch]:
        if self.format == "csv":
            yield from self._csv()
        elif self.format == "parquet":
            yield from self._parquet()
        else:
            yield from self._jsonl()

    # -- CSV --------------------------------------------------------------------------------
    def _csv(self) -> Iterator[pa.RecordBatch]:
        import pyarrow.csv as csv

        self.guesses = []
        delimiter = self.delimiter
        text = _sniff_text(self.path, self.encoding)  # refuses binary files
        if delimiter is None:
            delimiter, why = detect_delimiter(text, self.quote_char)
            self.guesses.append(why)
        read_options = csv.ReadOptions(block_size=self.block_bytes, encoding=self.encoding)
        names_given = _trailing_header_field(text, delimiter, self.quote_char)
        if names_given is not None:
            read_options.column_names, read_options.skip_rows = names_given, 1
            self.guesses.append(
                f"the header ends with an empty field that no row fills (a trailing "
                f"{delimiter!r}, as some exports write it): that column is left out"
            )
        self.dialect = {
            "delimiter": delimiter,
            "delimiter_detected": self.delimiter is None,
            "quote_char": self.quote_char,
            "encoding": self.encoding,
            "null_tokens": list(self.null_tokens),
        }
        try:
            stream = pa.input_stream(str(self.path), compression="detect")
            reader = csv.open_csv(
                stream,
                read_options=read_options,
                parse_options=csv.ParseOptions(delimiter=delimiter, quote_char=self.quote_char),
                convert_options=csv.ConvertOptions(
                    column_types={c: pa.string() for c in self.string_columns},
                    null_values=list(self.null_tokens),
                    strings_can_be_null=True,
                ),
            )
        except (pa.ArrowInvalid, UnicodeDecodeError, LookupError) as exc:
            msg = str(exc)
            if "Empty CSV file" in msg:
                raise InputError("is empty (no header, no rows)", path=self.path) from None
            raise InputError(
                f"cannot be read as CSV: {printable(msg, _MAX_QUOTE)}", path=self.path
            ) from None
        names = reader.schema.names
        self.schema = normal_schema(reader.schema, self.path)
        if self.schema.names[0] != names[0]:
            self.guesses.append(
                f"column #1 has no name in the header (a row index, as pandas writes one): "
                f"named {INDEX_NAME!r}"
            )
        dates: dict[str, DateReading] | None = None  # text columns parsed as date-times
        numbers: set[str] = set()  # text columns parsed as numbers
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                msg = str(exc)
                m = _CSV_ERR.search(msg)
                if m:
                    col = names[int(m.group(1))]
                    if m.group(2) in ("string", "binary") or "UTF8" in msg:
                        raise InputError(
                            "holds bytes that are not valid UTF-8 text (re-encode the file as "
                            "UTF-8, or pass encoding='latin-1' or the file's encoding)",
                            path=self.path,
                            column=col,
                        ) from None
                    if col not in self.string_columns:
                        raise _RetryAsString(col) from None
                raise InputError(
                    f"CSV parse error: {printable(msg, _MAX_QUOTE)}", path=self.path
                ) from None
            if dates is None:
                dates = self._date_columns(batch)
                numbers = self._number_columns(batch, dates)
            if dates or numbers:
                batch = self._parsed(batch, dates, numbers)
            yield normalise_batch(batch, self.schema, self.path)

    def _number_columns(self, first: pa.RecordBatch, dates: dict[str, DateReading]) -> set[str]:
        """Text columns of the first batch whose every value is a number as spreadsheets write
        them (a currency sign, thousands separators, a percent sign, spaces around it): read as
        float64 numbers, so the model sees an amount and its relations to the other columns, not
        a category per spelling (a marketing table writes `' Income '` as `$84,835.00 `: as
        text, a classifier told synthetic rows from held-out ones at AUC 0.759 and the income's
        rank correlations with the other numeric columns were 0.37 off on average, as
        numbers 0.605 and 0.04; ``benchmarks/number_text.py``). The schema is updated and each
        reading recorded as a guess; declaring the column categorical in the overrides keeps it
        text, and a later value that is not such a number makes it text again. A column that is
        almost all numbers (at least ``NUMBER_TEXT_SHARE``) stays text with a guess naming the
        values in the way: Bengaluru's house listings give `total_sqft` as `1056` on 98% of
        rows and as `2100 - 2850` or `34.46Sq. Meter` on the rest."""
        found: set[str] = set()
        for f, arr in zip(self.schema, first.columns, strict=True):
            if not pa.types.is_string(f.type) or f.name in dates:
                continue
            raw = _blank_to_null(arr).drop_null()
            if len(raw) == 0 or f.name in self.plain_text_columns:
                continue
            blanks = len(raw) < len(arr.drop_null())
            number = _number_text(raw)
            share = pc.mean(pc.cast(number, pa.int8())).as_py()
            if share == 1.0:
                found.add(f.name)
                formatted = pc.invert(pc.match_substring_regex(raw, _NUMBER_TEXT))
                example = (pc.filter(raw, formatted) if pc.any(formatted).as_py() else raw)[0]
                example = example.as_py()
                parsed = _parse_number_text(pa.array([example]), f.name)[0].as_py()
                self.guesses.append(
                    f"column {f.name!r}: numbers written as text (e.g. {example!r}, read as "
                    f"{parsed!r}: currency signs, thousands separators, percent signs and spaces "
                    "dropped"
                    + ("; values of spaces only read as missing" if blanks else "")
                    + ") parsed as numbers; declare the column categorical in the overrides "
                    "to keep it as text"
                )
                continue
            if not NUMBER_TEXT_SHARE <= share < 1.0:
                continue
            others = pc.unique(pc.filter(raw, pc.invert(number))).to_pylist()
            shown = ", ".join(repr(v) for v in others[:3]) + (", ..." if len(others) > 3 else "")
            padded = pc.any(pc.and_(number, pc.invert(pc.match_substring_regex(raw, _NUMBER_TEXT))))
            self.guesses.append(
                f"column {f.name!r}: {share:.1%} of its values in the first rows are numbers, but "
                f"not {shown}"
                + (" (and some numbers have spaces or tabs around them)" if padded.as_py() else "")
                + ": kept as text (categorical); to model it as a number, clean those values or "
                "name them in the null tokens"
            )
        if found:
            self.schema = pa.schema(
                [pa.field(f.name, pa.float64()) if f.name in found else f for f in self.schema]
            )
        return found

    def _parsed(
        self, batch: pa.RecordBatch, dates: dict[str, DateReading], numbers: set[str]
    ) -> pa.RecordBatch:
        cols = []
        for n, a in zip(self.schema.names, batch.columns, strict=True):
            r = dates.get(n)
            if n in numbers:
                cols.append(_parse_number_text(a, n))
            elif r is None:
                cols.append(a)
            elif not r.layouts:
                cols.append(_parse_iso(a, r.tz, n))
            else:
                cols.append(_parse_layout(a, r.layouts, n))
        return pa.RecordBatch.from_arrays(cols, schema=self.schema)

    def _date_columns(self, first: pa.RecordBatch) -> dict[str, DateReading]:
        """Text columns of the first batch that hold date-times (ISO, or one common layout
        such as ``10/19/2013`` or ``24/11/2020 11:14:15``), and how to read them; the
        reader's schema is updated to the timestamp types and each guess recorded. A later
        value the reading does not parse makes the column text again."""
        found: dict[str, DateReading] = {}
        for f, arr in zip(self.schema, first.columns, strict=True):
            if not pa.types.is_string(f.type) or f.name in self.plain_text_columns:
                continue
            tz = _iso_timezone(arr)
            if tz is not False:
                found[f.name] = DateReading(tz=tz)
                self.guesses.append(
                    f"column {f.name!r}: ISO date-times "
                    + (
                        "with UTC offsets converted to UTC (values without an offset read as UTC)"
                        if tz
                        else "without offsets parsed as timestamps"
                    )
                )
                continue
            layout = _date_layout(arr)
            if layout is None:
                continue
            found[f.name] = DateReading(layouts=layout[0])
            shown = " and ".join(repr(fmt) for _, fmt in layout[0])
            self.guesses.append(
                f"column {f.name!r}: dates in the layout{'s' if len(layout[0]) > 1 else ''} "
                f"{shown} parsed as timestamps"
                + (
                    " (day and month are both at most 12 in the first rows, so either could "
                    "come first: read month first; declare the column categorical in the "
                    "overrides to keep it as text)"
                    if layout[1]
                    else ""
                )
            )
        if found:
            self.schema = pa.schema(
                [
                    pa.field(f.name, pa.timestamp("us", tz=found[f.name].tz))
                    if f.name in found
                    else f
                    for f in self.schema
                ]
            )
        return found

    # -- Parquet ----------------------------------------------------------------------------
    def _parquet(self) -> Iterator[pa.RecordBatch]:

        # Every file's schema is checked before the first row is read, but the files are opened
        # for reading one at a time and closed after: an open ParquetFile keeps what it decoded
        # until it is released (measured with pyarrow 25: about 80 MiB per 2M-row file of 10
        # columns), so holding all of them open made ingest memory grow with the source's files
        # (2.5 GB at 100M rows, 13 files). Within a file, see ``parquet_batches``.
        files = source_files(self.path)
        first: pa.Schema | None = None
        for f in files:
            with _open_parquet(f) as pf:
                sch = normal_schema(pf.schema_arrow, f)
            if first is None:
                first = sch
            elif not sch.equals(first):
                raise InputError(
                    f"has columns {sch} that differ from the first file's {first}", path=f
                )
        assert first is not None
        self.schema = first
        for f in files:
            with _open_parquet(f) as pf:
                try:
                    for batch in parquet_batches(pf, self.batch_rows):
                        yield normalise_batch(batch, first, f)
                except InputError:
                    raise
                except (pa.ArrowException, OSError) as exc:
                    raise InputError(f"is not a valid Parquet file ({exc})", path=f) from None

    # -- JSON Lines ---------------------------------------------------------------------------
    def _jsonl(self) -> Iterator[pa.RecordBatch]:
        import pyarrow.json as pj

        if self.path.stat().st_size == 0:
            raise InputError("is empty (no rows)", path=self.path)
        try:
            stream = pa.input_stream(str(self.path), compression="detect")
            reader = pj.open_json(stream, read_options=pj.ReadOptions(block_size=self.block_bytes))
            self.schema = normal_schema(reader.schema, self.path)
            self.guesses, self.dialect = [], {}
            dates: dict[str, DateReading] | None = None  # text fields parsed as date-times
            for batch in reader:
                if dates is None:
                    dates = self._date_columns(batch)
                if dates:
                    batch = self._parsed(batch, dates, set())
                yield normalise_batch(batch, self.schema, self.path)
        except pa.ArrowInvalid as exc:
            msg = str(exc)
            m = _JSON_COL.search(msg)
            col = m.group(1).lstrip("/") if m else None
            if "changed from" in msg and col:
                raise InputError(
                    f"has values of mixed types ({msg}); make the field one type",
                    path=self.path,
                    column=col,
                ) from None
            raise InputError(
                f"cannot be read as JSON Lines: {msg}", path=self.path, column=col
            ) from None


def parquet_batches(
    pf: Any,
    batch_rows: int,
    *,
    columns: Sequence[str] | None = None,
    row_groups: Sequence[int] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of an open ``pq.ParquetFile``, one row group at a time.

    Why not one ``iter_batches`` over the file: its reader keeps memory from every row group it
    has decoded until the file is done (measured with pyarrow 25 on an 8-row-group file of 8M
    rows and 10 columns: 41 MiB after the first group, 173 MiB after the last), while a reader
    per row group stays at 25 MiB.
    """
    groups = range(pf.metadata.num_row_groups) if row_groups is None else row_groups
    cols = list(columns) if columns else None
    for g in groups:
        yield from pf.iter_batches(batch_size=batch_rows, row_groups=[g], columns=cols)


def _open_parquet(path: Path) -> Any:
    """``pq.ParquetFile(path)``, an InputError naming the file when it is not valid Parquet."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"is not a valid Parquet file ({exc})", path=path) from None


def check_readable(path: Path) -> None:
    """InputError naming ``path`` unless it (a file) opens, or (a folder) lists, for reading."""
    try:
        if path.is_dir():
            next(os.scandir(path), None)
        else:
            with open(path, "rb") as fh:
                fh.read(1)
    except OSError as exc:
        raise InputError(
            f"cannot be read ({exc.strerror or exc}); check its permissions", path=path
        ) from None


def local_source(source: str | os.PathLike[str]) -> Path:
    """The source as a local path: itself, or a cached copy of an object-store file or prefix.

    Why a copy: ingest reads a source more than once (dialect sniffing, a re-read when a column
    turns out to be text, the checksum), and every reader here streams from local files. The
    copy is cached under ``$PUSHFORWARD_HOME/cache/sources`` by URI and listing (sizes), so a
    preflight and the ingest that follows download it once.
    """
    from pfcore import storage

    if not storage.is_remote(source):
        return Path(source).expanduser()
    from pfcore.paths import pushforward_home

    return storage.local_copy(source, pushforward_home() / "cache" / "sources")


def open_source(
    source: str | os.PathLike[str], *, format: str | None = None, **kwargs: object
) -> SourceReader:
    """A streaming reader for a CSV, Parquet (file or folder) or JSON Lines source."""
    path = local_source(source)
    try:
        exists = path.exists()
    except OSError as exc:  # e.g. a parent folder this user may not enter
        raise InputError(
            f"cannot be read ({exc.strerror or exc}); check its permissions", path=path
        ) from None
    if not exists:
        raise InputError("does not exist", path=path)
    check_readable(path)
    fmt = format or detect_format(path)
    if fmt not in ("csv", "parquet", "jsonl"):
        raise InputError(f"unknown format {fmt!r} (csv, parquet, jsonl)", path=path)
    return SourceReader(path=path, format=fmt, **kwargs)  # type: ignore[arg-type]


def read_table(
    source: str | os.PathLike[str], *, format: str | None = None, encoding: str = "utf8"
) -> pa.Table:
    """Read a whole (small) source into memory, normalised exactly as ingest would."""
    string_columns: set[str] = set()
    plain: set[str] = set()
    while True:
        reader = open_source(
            source,
            format=format,
            encoding=encoding,
            string_columns=set(string_columns),
            plain_text_columns=set(plain),
        )
        try:
            batches = list(reader.batches())
        except _RetryAsString as retry:
            string_columns.add(retry.column)
            if retry.plain:
                plain.add(retry.column)
            continue
        return pa.Table.from_batches(batches, schema=reader.schema)


def part_files(dataset_dir: str | os.PathLike[str]) -> list[Path]:
    """An ingested dataset's part files in row order (InputError when it is not one)."""
    out = Path(dataset_dir)
    data = out / "data"
    if not (out / "manifest.json").exists() or not data.is_dir():
        raise InputError("is not an ingested dataset (manifest.json or data/ missing)", path=out)
    files = sorted(data.glob("part-*.parquet"))
    if not files:
        raise InputError("dataset has no part files", path=data)
    return files


def read_dataset(out_dir: str | os.PathLike[str], columns: Sequence[str] | None = None) -> pa.Table:
    """Load an ingested dataset's rows (all part files, in order) with the schema's exact types."""
    import pyarrow.parquet as pq

    files = part_files(out_dir)
    tables = [pq.read_table(f, columns=list(columns) if columns else None) for f in files]
    return pa.concat_tables(tables).replace_schema_metadata(None)
