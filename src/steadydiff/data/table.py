"""Typed tables: the column schema of a CSV or parquet file, and the map between its text cells and the rows of
numbers the data layer holds (`Table.encode`, `Table.decode`).

Each column has one of four types (`COLUMN_TYPES`), inferred from its cells (`infer_table`) unless `data.columns`
declares it ("species=categorical,year=integer"):

- numeric: numbers, some written with a decimal point or an exponent ("1.5", "2e3"); one entry; written back as
  floats ("3.0", never "3", so that a reader keeps the column's type);
- integer: every cell a whole number written as one ("12", "-3") and more than FEW_CODES distinct values (or
  declared); one entry; written back as integers (the normaliser rounds them);
- boolean: every cell true/false or yes/no, in any case (a column of 0/1 is categorical unless declared boolean);
  one entry, 0 or 1; written back as the file spells them;
- categorical: text that is not a number, or whole numbers with at most FEW_CODES distinct values (a class written
  0/1/2, a year of three surveys; or any cells, when declared); a block of 0/1 entries (its encoding, below),
  written back as the category's own text, so a sampled table holds only categories of the data.

A categorical column of K categories is encoded one of two ways (`ENCODINGS`; normalise.py says how the entries
enter σ-space as ±1):

- one_hot (K ≤ BITS_ABOVE): K entries, "name=category", a 1 at the category's entry; decoded by argmax;
- bits (K > BITS_ABOVE): the analog bits of Chen, Zhang & Hinton (2022), the category's index k in binary over
  B = ⌈log2 K⌉ entries "name:bit0" … (entry j holds bit j of k, worth 2^j). Sampled bits are thresholded at ½, as
  the paper does; where K is not a power of two the thresholded bits can spell an index ≥ K, so a block decodes to
  the valid category whose ±1 code correlates most with the entries (`nearest_code`): the thresholded index where
  that is valid (it maximises the correlation over all 2^B codes), the nearest valid code otherwise — never an
  index ≥ K. `data.columns` chooses either encoding for a column ("zip=categorical:bits", "class=categorical:one_hot").

Why few-valued whole numbers are categories: read as one ordered number, a code of k values is learnt as a density
on a line and rounded, which piles samples onto the middle codes (a 3-year column of Palmer penguins: 45–47 % of
samples on the middle year against 32.5 % in the data; wine's class 0/1/2: 45.5 % against 39.9 %), while a one-hot
block learns each code's share on its own. Declare such a column integer (data.columns=year=integer) to keep it one
ordered number: it is then rounded and kept within its training range (normalise.CODE_LEVELS). A column mixing
numbers and text is refused (a typo, or codes to declare categorical), as is a categorical column with more than
MAX_CATEGORIES values, or with more values than a share ID_SHARE of its rows: an identifier or free text, which
cannot be learnt as categories.

A missing cell (empty, NA, NaN, null, none, ?) is NaN in every entry of its column: a missing category masks its whole
block (one-hot or bits), so that it is learnt around as a missing number is (data.missing=learn) and `impute` fills it
with a category.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, DataError

ColumnType = Literal["numeric", "integer", "boolean", "categorical"]
COLUMN_TYPES: tuple[ColumnType, ...] = ("numeric", "integer", "boolean", "categorical")
Encoding = Literal["one_hot", "bits"]
ENCODINGS: tuple[Encoding, ...] = ("one_hot", "bits")  # of a categorical column (module docstring)
# A categorical column of more categories than this is analog bits. A one-hot block of K entries is −1 in all but one
# of them (in σ-space), so its entries' std is about 2/√K (0.35 at K = 32, 0.12 at K = 300) and, K entries counting
# as K columns, it sets σ_data (one std over all entries) and the loss for the whole row; bits cost ⌈log2 K⌉ entries
# (6 at K = 33), the low ones near balanced. Up to it one-hot wins: each category's share is learnt on its own entry,
# where with bits the network must learn which bit patterns are categories and one wrong bit is an unrelated one.
BITS_ABOVE = 32
# Cells read as a missing value (NaN), compared in lower case (a leading sign dropped: "-nan")
MISSING_CELLS = ("", "nan", "na", "n/a", "null", "none", "?")
MAX_CATEGORIES = 1000  # more distinct values than this: not a categorical column
ID_SHARE = 0.5  # distinct values in more than this share of the observed rows: an identifier, not a category
ID_MIN = 20  # a column with at most this many categories is never read as an identifier (a small table's classes)
FEW_CODES = 10  # whole-number columns with at most this many distinct values (and ≤ ID_SHARE of the rows): categorical
INFERRED_BOOLEAN = ("true", "false", "yes", "no")
TRUE_CELLS, FALSE_CELLS = ("true", "yes", "1"), ("false", "no", "0")  # as declared booleans read them
_PARTNER = {"true": "false", "yes": "no", "1": "0", "false": "true", "no": "yes", "0": "1"}


@dataclass(frozen=True)
class Column:
    """One column of a table: its name, its type and, for categorical columns, its categories in index order and
    their encoding (booleans: how the file spells false and true)."""

    name: str
    type: ColumnType
    categories: tuple[str, ...] = ()
    # numeric: the most digits after the point that a cell has (samples are written so); None: shortest float text
    decimals: int | None = None
    encoding: Encoding = "one_hot"  # categorical: one entry per category, or analog bits (module docstring)

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise DataError(f"column '{self.name}': encoding {self.encoding!r} is none of {', '.join(ENCODINGS)}")

    @property
    def width(self) -> int:
        """Entries of the column in a row of numbers: one; one per category (one-hot); ⌈log2 K⌉ (bits)."""
        if self.type != "categorical":
            return 1
        return len(self.categories) if self.encoding == "one_hot" else max(1, (len(self.categories) - 1).bit_length())

    def entries(self) -> list[str]:
        """The names of its entries: the column's, "name=category" for each category, or "name:bitJ" (worth 2^J)."""
        if self.type != "categorical":
            return [self.name]
        if self.encoding == "one_hot":
            return [f"{self.name}={c}" for c in self.categories]
        return [f"{self.name}:bit{j}" for j in range(self.width)]

    def codes(self) -> np.ndarray:
        """(K, width) float64 0/1: each category's entries (a boolean's: false 0, true 1)."""
        k = len(self.categories)
        if self.type == "boolean":
            return np.array([[0.0], [1.0]])
        if self.type != "categorical":
            raise DataError(f"column '{self.name}' is {self.type}: it has no category codes")
        if self.encoding == "one_hot":
            return np.eye(k)
        return ((np.arange(k)[:, None] >> np.arange(self.width)) & 1).astype(np.float64)

    def category_index(self, block: np.ndarray) -> np.ndarray:
        """(N,) int64: the category of each row of the column's entries (N, width), whatever their values: a boolean
        true above ½, a one-hot block's largest entry (argmax), a bit block's `nearest_code`. A row with a NaN entry
        gets some valid index; `Table.decode` reads it as missing."""
        block = np.nan_to_num(np.asarray(block, dtype=np.float64), nan=0.5)
        if self.type == "boolean":
            return (block[:, 0] > 0.5).astype(np.int64)
        if self.type != "categorical":
            raise DataError(f"column '{self.name}' is {self.type}: it holds no categories")
        if self.encoding == "one_hot":
            return np.argmax(block, axis=1)
        return nearest_code(block, self.codes())

    def describe(self) -> str:
        if self.type == "categorical":
            bits = f", {self.width} analog bits" if self.encoding == "bits" else ""
            return f"{self.name} categorical ({len(self.categories)}{bits})"
        if self.type == "boolean":
            return f"{self.name} boolean ({'/'.join(self.categories)})"
        return f"{self.name} {self.type}"


def nearest_code(block: Any, codes: Any) -> Any:
    """Per row of `block` (…, B), numpy or torch, the index of the row of `codes` (K, B) of 0/1 entries (the same
    array type) that correlates most with it: argmax_k Σ_j (2·codes[k, j] − 1)(block[…, j] − ½). Codes of equal
    length make this the nearest code in Euclidean distance, and over all 2^B codes its maximum is the bits
    thresholded at ½ (Chen, Zhang & Hinton 2022 decode analog bits so); over a block's K valid codes it is the
    analogue of a one-hot block's argmax, and an index < K."""
    return ((block - 0.5) @ (2 * codes - 1).T).argmax(-1)


@dataclass(frozen=True)
class Table:
    """The schema of a table: its columns in file order. A row of numbers (`width` entries) holds the columns in
    that order, each categorical column as its block of entries (one-hot or bits)."""

    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    @property
    def entry_names(self) -> list[str]:
        return [e for c in self.columns for e in c.entries()]

    @property
    def has_categories(self) -> bool:
        """Whether some column is boolean or categorical (entries that are 0/1 codes, not numbers)."""
        return any(c.type in ("boolean", "categorical") for c in self.columns)

    def spans(self) -> list[tuple[int, int]]:
        """Each column's entries [start, stop) in a row of numbers."""
        stops = np.cumsum([c.width for c in self.columns])
        return [(int(s - c.width), int(s)) for c, s in zip(self.columns, stops, strict=True)]

    def one_hot_spans(self) -> list[tuple[int, int]]:
        """The blocks [start, stop) of the categorical columns, one-hot and bits alike: each holds one category, so
        it is given, hidden or missing as a whole."""
        return [s for c, s in zip(self.columns, self.spans(), strict=True) if c.type == "categorical"]

    def categorical(self) -> list[tuple[Column, tuple[int, int]]]:
        """The categorical columns with their blocks [start, stop)."""
        return [(c, s) for c, s in zip(self.columns, self.spans(), strict=True) if c.type == "categorical"]

    def bit_entries(self) -> list[int]:
        """The entries of the boolean columns."""
        return [a for c, (a, _) in zip(self.columns, self.spans(), strict=True) if c.type == "boolean"]

    def integer_entries(self) -> list[int]:
        return [a for c, (a, _) in zip(self.columns, self.spans(), strict=True) if c.type == "integer"]

    def coded(self) -> np.ndarray:
        """(width,) bool: the entries that are 0/1 codes (boolean columns, one-hot and bit blocks)."""
        return np.array([c.type in ("boolean", "categorical") for c in self.columns for _ in range(c.width)],
                        dtype=bool)

    def encode(self, cells: Sequence[Sequence[str]], where: str, lines: Sequence[int] | None = None) -> np.ndarray:
        """(N, width) float64 rows of numbers from text `cells`, one sequence of N stripped cells per column (in
        `columns` order), NaN in every entry of a missing cell. A cell that does not fit its column (text in a
        number column, a category the table does not have) raises DataError naming `where`, the line (`lines`,
        1-based, else the row) and the column."""
        if len(cells) != len(self.columns):
            raise DataError(f"{where}: {len(cells)} columns, but the table has {len(self.columns)} "
                            f"({_listing(self.names)})")
        n = len(cells[0]) if len(cells) else 0
        out = np.empty((n, self.width), dtype=np.float64)
        for col, text, (a, b) in zip(self.columns, cells, self.spans(), strict=True):
            out[:, a:b] = _encode_column(col, np.asarray(text, dtype=str).reshape(n), where, lines)
        return out

    def decode(self, x: np.ndarray) -> list[list[str]]:
        """The text cells of rows of numbers (N, width): numbers as their column's type writes them, a boolean as the
        file spelt it, a category as `Column.category_index` reads its block (a one-hot block's argmax, a bit block's
        nearest valid code), so only the column's categories; an entry that is NaN as an empty cell."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.width:
            raise DataError(f"rows of this table are {self.width} values ({len(self.columns)} columns, a block of "
                            f"entries per categorical one), got an array shaped {x.shape}")
        columns = []
        for col, (a, b) in zip(self.columns, self.spans(), strict=True):
            block = x[:, a:b]
            if col.type == "numeric":
                text = [_float_text(v, col.decimals) for v in block[:, 0]]
            elif col.type == "integer":
                text = [f"{v + 0.0:.0f}" for v in block[:, 0]]  # + 0.0: −0 is written 0
            else:
                text = [col.categories[k] for k in col.category_index(block)]
            missing = np.isnan(block).any(1)
            columns.append(["" if m else t for t, m in zip(text, missing, strict=True)])
        return [list(row) for row in zip(*columns, strict=True)] if columns else []

    def missing_cells(self, x: np.ndarray) -> np.ndarray:
        """(N, columns) bool: the cells of rows of numbers (N, width) that are unknown (NaN in their entries)."""
        x = np.asarray(x, dtype=np.float64)
        return np.stack([np.isnan(x[:, a:b]).any(1) for a, b in self.spans()], axis=1)

    def consensus(self, draws: np.ndarray) -> np.ndarray:
        """One row per item from K draws (K, N, width) of it: per entry the median over the draws for numbers (whole
        for integer columns), the majority for booleans, and for a categorical column its most frequent category
        (the first of those tied; each draw's category as `decode` reads it), so that the result holds valid categories
        only."""
        d = np.asarray(draws, dtype=np.float64)
        out = np.median(d, axis=0)
        for j in self.integer_entries():
            out[:, j] = np.round(out[:, j])
        for j in self.bit_entries():
            out[:, j] = (d[:, :, j].mean(0) > 0.5).astype(np.float64)
        for col, (a, b) in self.categorical():
            k, n = d.shape[:2]
            index = col.category_index(d[:, :, a:b].reshape(k * n, b - a)).reshape(k, n)
            counts = np.zeros((n, len(col.categories)), dtype=np.int64)
            np.add.at(counts, (np.broadcast_to(np.arange(n), (k, n)), index), 1)
            out[:, a:b] = col.codes()[np.argmax(counts, axis=1)]
        return out

    def check_rows(self, x: np.ndarray, where: str) -> None:
        """Raise DataError unless rows of numbers (N, width) hold, for each column, either NaN in all its entries
        (unknown) or a value of its type: a boolean 0 or 1, a category's block its code (one-hot: one 1 and 0
        elsewhere; bits: 0/1 entries spelling an index below the number of categories)."""
        x = np.asarray(x, dtype=np.float64)
        for col, (a, b) in zip(self.columns, self.spans(), strict=True):
            if col.type not in ("boolean", "categorical"):
                continue
            block = x[:, a:b]
            unknown = np.isnan(block)
            partial = unknown.any(1) & ~unknown.all(1)
            known = ~unknown.any(1)
            binary = np.isin(block, (0.0, 1.0)).all(1)
            if col.type == "boolean":
                valid, want = binary, "0 or 1"
            elif col.encoding == "one_hot":
                valid = binary & (block.sum(1) == 1)
                want = f"one 1 (its category) and 0 in the other {b - a - 1} entries ({', '.join(col.entries()[:4])}…)"
            else:
                valid = binary & (np.nan_to_num(block) @ (2.0 ** np.arange(b - a)) < len(col.categories))
                want = (f"0 or 1 in each of its {b - a} entries ({', '.join(col.entries()[:3])}…, entry j worth 2^j), "
                        f"spelling a category's index below {len(col.categories)}")
            bad = partial | (known & ~valid)
            if bad.any():
                i = int(np.argmax(bad))
                raise DataError(f"{where}: item {i}, column '{col.name}' holds {block[i].tolist()}; give {want}, or "
                                "NaN in every entry where the value is unknown")

    def describe(self) -> str:
        return ", ".join(c.describe() for c in self.columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe columns; a categorical column's encoding is recorded (a saved run without it is one-hot)."""
        return {"columns": [{"name": c.name, "type": c.type, "categories": list(c.categories), "decimals": c.decimals}
                            | ({"encoding": c.encoding} if c.type == "categorical" else {}) for c in self.columns]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Table:
        return cls(tuple(Column(str(c["name"]), c["type"], tuple(str(v) for v in c.get("categories", ())),
                                c.get("decimals"), c.get("encoding", "one_hot")) for c in d["columns"]))


# --------------------------------------------------------------------------------------------------
# data.columns: declared types.


@dataclass(frozen=True)
class Declared:
    """A column's type as data.columns declares it ("zip=categorical:bits"): a categorical one may name its encoding
    (None: by its number of categories, BITS_ABOVE)."""

    type: ColumnType
    encoding: Encoding | None = None

    def __str__(self) -> str:
        return self.type + (f":{self.encoding}" if self.encoding else "")


def parse_columns(spec: str | None) -> dict[str, Declared]:
    """data.columns ("species=categorical, year=integer, zip=categorical:bits") as {column: Declared}; an unknown
    type or encoding, an encoding of a column that is not categorical or a malformed item raises ConfigError with
    the closest name."""
    declared: dict[str, Declared] = {}
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        name, sep, said = item.rpartition("=")
        name = name.strip()
        kind, colon, encoding = (part.strip() for part in said.strip().lower().partition(":"))
        if not sep or not name:
            raise ConfigError(f"data.columns: {item.strip()!r} is not COLUMN=TYPE (e.g. data.columns="
                              "\"species=categorical,year=integer\")")
        if kind not in COLUMN_TYPES:
            close = difflib.get_close_matches(kind, COLUMN_TYPES, n=1)
            raise ConfigError(f"data.columns: {kind!r} (column {name!r}) is not a column type; choose "
                              f"{', '.join(COLUMN_TYPES)}" + (f". Did you mean {close[0]!r}?" if close else ""))
        if colon and kind != "categorical":
            raise ConfigError(f"data.columns: {said.strip()!r} (column {name!r}): only a categorical column takes an "
                              f"encoding ({name}=categorical:{ENCODINGS[1]})")
        if colon and encoding not in ENCODINGS:
            close = difflib.get_close_matches(encoding, ENCODINGS, n=1)
            raise ConfigError(f"data.columns: {encoding!r} (column {name!r}) is not an encoding of categories; choose "
                              f"{', '.join(ENCODINGS)}" + (f". Did you mean {close[0]!r}?" if close else ""))
        if name in declared:
            raise ConfigError(f"data.columns declares column {name!r} twice")
        # both checked against COLUMN_TYPES and ENCODINGS above
        declared[name] = Declared(kind, encoding or None)  # type: ignore[arg-type]
    return declared


# --------------------------------------------------------------------------------------------------
# Inference.


def infer_table(names: Sequence[str], cells: Sequence[Sequence[str]], where: str, *,
                declared: dict[str, Declared] | None = None, lines: Sequence[int] | None = None,
                codes: bool = True) -> Table:
    """The schema of a table from its text `cells` (one sequence of stripped cells per column, named `names`):
    each column's type (and a categorical one's encoding) inferred from its cells (see the module docstring), or as
    `declared` (data.columns).
    `codes=False`: whole numbers of few values stay integer (the channels of a series)."""
    declared = dict(declared or {})
    unknown = [n for n in declared if n not in names]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(names), n=1)
        raise DataError(f"{where}: data.columns names column {unknown[0]!r}, which the table does not have; its "
                        f"columns are {_listing(names)}" + (f". Did you mean {close[0]!r}?" if close else ""))
    return Table(tuple(_infer_column(name, np.asarray(text, dtype=str), declared.get(name), where, lines, codes)
                       for name, text in zip(names, cells, strict=True)))


def _infer_column(name: str, text: np.ndarray, declared: Declared | None, where: str,
                  lines: Sequence[int] | None, codes: bool = True) -> Column:
    values, missing = _numbers(text)
    seen = ~missing
    words = seen & np.isnan(values)  # cells that are neither a number nor missing
    numbers = seen & ~np.isnan(values)
    said = f" (data.columns={name}={declared})" if declared else ""
    kind: ColumnType
    if declared is not None:
        kind = declared.type
    elif not words.any():
        kind = "integer" if numbers.any() and _integer_literals(text[numbers]).all() else "numeric"
        if kind == "integer" and codes and _few_codes(values[numbers]):
            kind = "categorical"
    elif not numbers.any():
        kind = "boolean" if set(np.char.lower(text[seen])) <= set(INFERRED_BOOLEAN) else "categorical"
    else:
        raise _mixed(name, text, words, numbers, where, lines)
    if kind in ("numeric", "integer") and words.any():
        i = int(np.argmax(words))
        raise DataError(f"{where}: column '{name}' is not numeric{said}: {_place(i, lines)} holds {str(text[i])!r}. "
                        "Give a number, or leave the cell empty (or NA) where the value is missing.")
    if kind == "integer" and (np.isfinite(values) & (values != np.round(values))).any():
        i = int(np.argmax(np.isfinite(values) & (values != np.round(values))))
        raise DataError(f"{where}: column '{name}' is declared integer{said}, but {_place(i, lines)} holds "
                        f"{str(text[i])!r}, not a whole number; declare it numeric")
    if kind == "boolean":
        lower = np.char.lower(text)
        bad = seen & ~np.isin(lower, TRUE_CELLS + FALSE_CELLS)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{where}: column '{name}' is declared boolean{said}, but {_place(i, lines)} holds "
                            f"{str(text[i])!r}; a boolean cell is true/false, yes/no or 1/0 (or empty where unknown)")
        return Column(name, "boolean", _spellings(text[seen]))
    if kind == "categorical":
        categories = _categories(name, text[seen], numbers[seen].all(), where)
        encoding = declared.encoding if declared is not None and declared.encoding else \
            "bits" if len(categories) > BITS_ABOVE else "one_hot"
        return Column(name, "categorical", categories, encoding=encoding)
    return Column(name, kind, decimals=_decimals(text[numbers]) if kind == "numeric" else None)


def _few_codes(values: np.ndarray) -> bool:
    """Whether whole numbers look like codes (module docstring): at most FEW_CODES distinct values, and few against
    the rows (so a small table's counts stay numbers)."""
    k = len(np.unique(values))
    return 2 <= k <= FEW_CODES and k <= ID_SHARE * len(values)


def _mixed(name: str, text: np.ndarray, words: np.ndarray, numbers: np.ndarray, where: str,
           lines: Sequence[int] | None) -> DataError:
    """The error for a column of numbers and text: the odd cell out named, with both ways to fix it."""
    if numbers.sum() >= words.sum():  # mostly numbers: the text is the odd one out
        i = int(np.argmax(words))
        return DataError(f"{where}: column '{name}' is not numeric: {_place(i, lines)} holds {str(text[i])!r}, while "
                         f"{int(numbers.sum()):,} of its cells are numbers. Fix the cell, leave it empty (or NA) where "
                         f"the value is missing, or set data.columns={name}=categorical to read every value as a "
                         "category.")
    i, j = int(np.argmax(numbers)), int(np.argmax(words))
    return DataError(f"{where}: column '{name}' mixes text and numbers: {_place(i, lines)} holds {str(text[i])!r}, "
                     f"{_place(j, lines)} holds {str(text[j])!r}. Fix the cells, or set "
                     f"data.columns={name}=categorical to read every value as a category.")


def _categories(name: str, cells: np.ndarray, numeric: bool, where: str) -> tuple[str, ...]:
    """The distinct cells of a categorical column, sorted (by value where all are numbers), or DataError when there
    are too many to be categories."""
    found = set(cells.tolist())
    k, n = len(found), len(cells)
    if k > MAX_CATEGORIES or (k > ID_MIN and k > ID_SHARE * n):
        raise DataError(f"{where}: column '{name}' holds {k:,} distinct values in {n:,} rows: too many to learn as "
                        f"categories (at most {MAX_CATEGORIES:,}, and fewer than {100 * ID_SHARE:g} % of the rows); it "
                        "looks like an identifier or free text. Drop the column, group its rare values (e.g. into "
                        f"'other'), or, where its values are numbers, set data.columns={name}=numeric.")
    if numeric:
        return tuple(sorted(found, key=lambda c: (float(c), c)))
    return tuple(sorted(found))


def _spellings(cells: np.ndarray) -> tuple[str, str]:
    """How a boolean column writes (false, true): the commonest spelling of each; one the column never takes is the
    partner of the other's word (yes → no) in its case."""
    common = [c for c, _ in Counter(cells.tolist()).most_common()]
    false = next((c for c in common if c.lower() in FALSE_CELLS), None)
    true = next((c for c in common if c.lower() in TRUE_CELLS), None)
    if false is None and true is None:
        return "false", "true"
    if false is None:
        false = _in_case_of(_PARTNER[true.lower()], true)
    if true is None:
        true = _in_case_of(_PARTNER[false.lower()], false)
    return false, true


def _in_case_of(word: str, like: str) -> str:
    return word.upper() if like.isupper() and len(like) > 1 else word.capitalize() if like[:1].isupper() else word


def _encode_column(col: Column, text: np.ndarray, where: str, lines: Sequence[int] | None) -> np.ndarray:
    """(N, width) entries of one column's cells (see `Table.encode`)."""
    values, missing = _numbers(text)
    seen = ~missing
    if col.type in ("numeric", "integer"):
        bad = seen & np.isnan(values)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{where}: column '{col.name}' holds numbers, and {_place(i, lines)} holds "
                            f"{str(text[i])!r}: give a number, or leave the cell empty where the value is unknown")
        fraction = seen & np.isfinite(values) & (values != np.round(values)) if col.type == "integer" else seen & False
        if fraction.any():
            i = int(np.argmax(fraction))
            raise DataError(f"{where}: column '{col.name}' holds whole numbers, and {_place(i, lines)} holds "
                            f"{str(text[i])!r}: give a whole number, or declare the column numeric "
                            f"(data.columns=\"{col.name}=numeric\") when training")
        return values[:, None]
    if col.type == "boolean":
        lower = np.char.lower(text)
        v = np.where(np.isin(lower, TRUE_CELLS), 1.0, np.where(np.isin(lower, FALSE_CELLS), 0.0, np.nan))
        bad = seen & np.isnan(v)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{where}: column '{col.name}' is boolean ({'/'.join(col.categories)}), and "
                            f"{_place(i, lines)} holds {str(text[i])!r}; give one of those, or leave the cell empty")
        v[missing] = np.nan
        return v[:, None]
    index = {c: k for k, c in enumerate(col.categories)}
    codes = np.array([index.get(c, -1) for c in text.tolist()], dtype=np.int64).reshape(len(text))
    bad = seen & (codes < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{where}: {_place(i, lines)} holds {str(text[i])!r} in column '{col.name}', which is not "
                        f"one of its {len(col.categories)} categories ({_listing(list(col.categories))}); give one of "
                        "them, or leave the cell empty where it is unknown")
    out = col.codes()[np.where(seen, codes, 0)]
    out[missing] = np.nan
    return out


def _numbers(text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, missing) of stripped cells: each cell's number (NaN where it is none) and whether it marks a missing
    value (MISSING_CELLS)."""
    import pandas as pd

    lower = np.char.lower(text)
    missing = np.isin(np.char.lstrip(lower, "+-"), MISSING_CELLS)
    values = pd.to_numeric(pd.Series(text, dtype=object), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(missing, np.nan, values), missing


def _integer_literals(cells: np.ndarray) -> np.ndarray:
    """Whether each number cell is written as an integer (digits after an optional sign)."""
    body = np.char.lstrip(cells, "+-")
    return np.char.isdigit(body) & (np.char.str_len(cells) - np.char.str_len(body) <= 1)


MAX_DECIMALS = 8  # a numeric column written with more digits after the point is written back in full


def _decimals(cells: np.ndarray) -> int | None:
    """The most digits after the point in a numeric column's cells (at least 1, so that a sample reads back as a
    float); None where a cell has an exponent or more than MAX_DECIMALS digits."""
    if not len(cells) or (np.char.find(np.char.lower(cells), "e") >= 0).any():
        return None
    most = int(np.char.str_len(np.char.partition(cells, ".")[:, 2]).max())
    return max(most, 1) if most <= MAX_DECIMALS else None


def _float_text(v: float, decimals: int | None = None) -> str:
    """A float with `decimals` digits after the point, or (None) as the shortest text that reads back as the same
    float32; always with a point or an exponent, so that it reads back as a float."""
    if decimals is not None and np.isfinite(v):
        text = f"{v + 0.0:.{decimals}f}"
        return text.lstrip("-") if float(text) == 0 else text  # −0.04 at one decimal is 0.0
    text = str(np.float32(v + 0.0))
    return text if any(c in text for c in ".en") else text + ".0"


def _place(i: int, lines: Sequence[int] | None) -> str:
    return f"line {int(lines[i])}" if lines is not None else f"row {i + 1}"


def _listing(names: Sequence[str], show: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:show])
    return shown + (f" and {len(names) - show} more" if len(names) > show else "")
