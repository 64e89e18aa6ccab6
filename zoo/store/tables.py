"""Reading and writing the CSVs of a data folder: validated, locked, all-or-nothing.

- **Read** (``read``): a table is checked against its schema (``zoo.store.schema``) as it is read. A
  truncated, garbled or binary file, a wrong column, a value of the wrong type or a duplicate key
  raises ``DataError`` naming the file and the line; nothing is normalised silently.
- **Write** (``update``): a stage's changes to several tables are one commit. Under the folder's
  lock (``filelock``), each table is read, merged (the rows of the models the stage replaced are
  dropped, the new ones added) and written to a temporary file; a journal naming every rename is
  written next, then the renames. A run killed part-way leaves a journal, and the next run that
  takes the lock finishes the renames before doing anything else (``recover``): the tables change
  together or not at all. Stray temporary files are removed there too.
- Concurrent runs on one folder are serialised by the lock, so every run's rows are kept.

The data folder is the current directory's ``data/`` unless a command is given ``--data``.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import os
import re
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from zoo.errors import DataError, UsageError
from zoo.store.schema import KEY, TABLES, Col, Table, round_sig

JOURNAL = ".commit.json"
_UMASK = os.umask(0o022)
os.umask(_UMASK)
LOCK = ".zoo.lock"
LOCK_TIMEOUT_S = 3600  # a writer holds the lock for about a second


def default_data() -> Path:
    """The current project's data folder: ``./data``."""
    return Path.cwd() / "data"


def check_folder(folder: Path) -> Path:
    """``folder``, made if missing; raises UsageError (one line) unless files can be written in it.
    A stage calls this before measuring anything."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--data {folder}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UsageError(f"--data {folder}: cannot write there ({exc.strerror or exc})") from None
    return folder


@contextmanager
def locked(folder: Path):
    """The folder's lock, held; a half-done commit left by a killed run is finished first.
    A folder this user cannot write (a read-only copy of the data) is read without the lock,
    unless a half-done commit waits there (DataError: it needs finishing by someone who can)."""
    from filelock import FileLock

    folder = Path(folder)
    if not os.access(folder, os.W_OK) or not _can_lock(folder):
        if (folder / JOURNAL).exists():
            raise DataError(f"{folder}: a half-done commit ({JOURNAL}) waits to be finished, and "
                            "this folder cannot be written here")
        yield folder
        return
    with FileLock(folder / LOCK, timeout=LOCK_TIMEOUT_S):
        recover(folder)
        yield folder


def _can_lock(folder: Path) -> bool:
    try:
        with open(folder / LOCK, "a"):
            return True
    except OSError:  # a read-only file system, whatever the permission bits say
        return False


# ---- reading -----------------------------------------------------------------------------------

def read(folder: Path, name: str) -> pd.DataFrame:
    """Table ``name`` of ``folder``, validated and typed; an empty frame with its columns if the
    file is missing. Raises DataError for a bad file."""
    table = TABLES[name]
    path = Path(folder) / table.file
    if not path.exists() and table.compressed and (Path(folder) / name).exists():
        table = dataclasses.replace(table, compressed=False)  # written before it was gzipped
        path = Path(folder) / name
    if not path.exists():
        return _empty(table)
    stat = path.stat()
    seen = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, stat.st_ino)
    if _READ.get(name, (None,))[0] == seen:  # read (and validated) already, unchanged since
        return _READ[name][1].copy()
    df = _read(path, table)
    _READ[name] = (seen, df)
    return df.copy()


_READ: dict[str, tuple] = {}  # table -> (the file as last read, its frame): one per table


def _read(path: Path, table: Table) -> pd.DataFrame:
    raw = path.read_bytes()
    if table.compressed:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: not a whole gzip file ({exc})") from None
    return parse(raw, table, str(path))


def _empty(table: Table) -> pd.DataFrame:
    return conform(pd.DataFrame({c: [] for c in table.columns}), table)


def parse(raw: bytes, table: Table, where: str) -> pd.DataFrame:
    """The bytes of a CSV of ``table``, checked and typed."""
    if not raw:
        raise DataError(f"{where}: empty file (not even a header)")
    if b"\0" in raw:
        raise DataError(f"{where}: line {_line_at(raw, raw.index(bytes(1)))}: binary "
                        "content, not a CSV")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: line {_line_at(raw, exc.start)}: not UTF-8 text") from None
    if not text.endswith("\n"):
        raise DataError(f"{where}: line {_line_at(raw, len(raw))}: cut off (no newline at the end: "
                        "the file is truncated)")
    records, lines = [], []  # each record and the file line it starts on (a cell may hold newlines)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for record in reader:
            records.append(record)
            lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{where}: line {start}: {exc}") from None
    header, rows = records[0], records[1:]
    repeated = [c for i, c in enumerate(header) if c in header[:i]]
    if repeated:
        raise DataError(f"{where}: line 1: column {repeated[0]!r} appears twice")
    for col in header:
        if table.col(col) is None:  # only a strict table has no type for a column
            raise DataError(f"{where}: line 1: unknown column {col!r}")
    missing = [c for c in table.columns if c not in header and c not in table.added]
    if missing:
        raise DataError(f"{where}: line 1: missing column {missing[0]!r}")
    for line, row in zip(lines[1:], rows):
        if len(row) != len(header):
            raise DataError(f"{where}: line {line}: {len(row)} fields, the header has {len(header)}")
    df = pd.DataFrame(rows, columns=header, dtype=object, index=lines[1:]).replace("", None)
    if table.legacy is not None:
        df = table.legacy(df)
    for col in table.added:
        if col not in df.columns:  # a file from before the column: empty, in the schema's order
            df.insert(list(table.columns).index(col), col, None)
    return _validate(df, table, where).reset_index(drop=True)


def _line_at(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def _validate(df: pd.DataFrame, table: Table, where: str) -> pd.DataFrame:
    """``df`` (text cells, indexed by file line) checked against ``table`` and typed."""
    import pandera.pandas as pa

    columns = {c: pa.Column(_dtype(table.col(c)), nullable=table.col(c).nullable, coerce=True,
                            checks=_checks(table.col(c))) for c in df.columns}
    unique = table.key if table.unique else None
    schema = pa.DataFrameSchema(columns, unique=unique, report_duplicates="exclude_first")
    try:
        out = schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise DataError(f"{where}: {_first_failure(exc.failure_cases, table)}") from None
    return _nan_for_null(out)


def _dtype(col: Col):
    return {"str": str, "int": "Int64" if col.nullable else "int64", "float": "float64"}[col.kind]


def _checks(col: Col) -> list:
    import pandera.pandas as pa

    checks = []
    if col.min is not None:
        checks.append(pa.Check.ge(col.min))
    if col.max is not None:
        checks.append(pa.Check.le(col.max))
    return checks


def _first_failure(cases: pd.DataFrame, table: Table) -> str:
    case = cases.iloc[0]
    index = case.get("index")
    line = f"line {int(index)}: " if index is not None and not pd.isna(index) else ""
    if case["check"] == "field_uniqueness" or "unique" in str(case["check"]):
        dup = cases[cases["index"].notna()]
        first = int(dup["index"].min()) if not dup.empty else None
        return (f"line {first}: the key ({', '.join(table.key)}) repeats an earlier row"
                if first else f"duplicate key ({', '.join(table.key)})")
    value = case["failure_case"]
    what = ("empty, where a value is required" if value is None or pd.isna(value)
            else f"{value!r} fails {case['check']}")
    return f"{line}column {case['column']!r}: {what}"


def _nan_for_null(df: pd.DataFrame) -> pd.DataFrame:
    """Empty cells as NaN (pandas' own reading), but in the key's ``weights``, where empty is a
    name: an architecture that has no pretrained weights."""
    for c in df.columns:
        if df[c].dtype == object or str(df[c].dtype) in ("str", "string"):
            df[c] = df[c].astype(object).where(df[c].notna(), "" if c == "weights" else np.nan)
    return df


# ---- writing -----------------------------------------------------------------------------------

def conform(df: pd.DataFrame, table: Table) -> pd.DataFrame:
    """``df`` with each column stored as its schema says: integers as integers (empty where
    missing), floats rounded where the schema gives significant digits; an optional column it
    lacks is added empty. Raises ValueError for a column the table does not have, or lacks and
    needs, or a value of the wrong type: what is written can be read back."""
    out = df.copy()
    lacking = [c for c in table.columns if c not in out.columns]
    if lacking:
        needed = [c for c in lacking if not table.columns[c].nullable]
        if needed:
            raise ValueError(f"{table.name}: rows without column {needed[0]!r}")
        out = out.reindex(columns=list(table.columns) + [c for c in out.columns
                                                         if c not in table.columns])
    for c in out.columns:
        col = table.col(c)
        if col is None:
            raise ValueError(f"{table.name}: no column {c!r} in the schema")
        if col.kind == "int":
            out[c] = pd.to_numeric(out[c]).round().astype("Int64" if col.nullable else "int64")
        elif col.kind == "float":
            values = pd.to_numeric(out[c]).astype("float64")
            out[c] = values.map(lambda x: round_sig(x, col.digits)) if col.digits else values
        else:
            out[c] = out[c].astype(object)
    return out


def merge(old: pd.DataFrame, new: pd.DataFrame, replaced: set[tuple], table: Table) -> pd.DataFrame:
    """``old`` without the rows of the models in ``replaced``, plus ``new``; sorted by the table's
    key (stable: rows of one model keep their order), columns of ``new`` first."""
    if not old.empty:
        keep = [tuple(k) not in replaced for k in old[KEY].itertuples(index=False, name=None)]
        old = old[keep]
    frames = [f for f in (old, new) if not f.empty]
    out = pd.concat(frames, ignore_index=True) if frames else new
    columns = list(new.columns) + [c for c in out.columns if c not in new.columns]
    return out[columns].sort_values(table.key, kind="stable").reset_index(drop=True)


def update(folder: Path, changes: dict[str, tuple[pd.DataFrame, set[tuple]]]) -> None:
    """One commit of several tables: for each ``name: (rows, replaced)``, the table's rows of the
    models in ``replaced`` give way to ``rows``. All tables change together (see module doc)."""
    folder = Path(folder)
    with locked(folder):
        frames = {}
        for name, (rows, replaced) in changes.items():
            table = TABLES[name]
            new = conform(rows, table)
            _validate(new.astype(object).where(new.notna(), None), table, f"new rows of {name}")
            frames[name] = merge(read(folder, name), new, replaced, table)
        _commit(folder, frames)


def _commit(folder: Path, frames: dict[str, pd.DataFrame]) -> None:
    renames = []
    try:
        for name, df in frames.items():
            table = TABLES[name]
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
            renames.append((Path(tmp).name, table.file))
            os.fchmod(fd, 0o666 & ~_UMASK)  # as a plain open() would make it
            text = df.to_csv(index=False, lineterminator="\n").encode()
            with os.fdopen(fd, "wb") as fh:
                # gzip without a time stamp or name: the same rows give the same bytes
                fh.write(gzip.compress(text, 9, mtime=0) if table.compressed else text)
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        for tmp, _ in renames:
            (folder / tmp).unlink(missing_ok=True)
        raise
    _write_journal(folder, renames)  # interrupted before its rename, it leaves strays: removed
    recover(folder)
    for name in frames:  # a table now gzipped: its plain copy from before is superseded
        if TABLES[name].compressed:
            (folder / name).unlink(missing_ok=True)


def _write_journal(folder: Path, renames: list[tuple[str, str]]) -> None:
    tmp = folder / (JOURNAL + ".tmp")
    with open(tmp, "w") as fh:
        json.dump({"renames": renames}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / JOURNAL)  # from here on the commit will happen, now or on recovery
    _sync_dir(folder)


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_TEMP = re.compile(r"^\.(?P<table>[\w.-]+\.csv)\.[a-z0-9_]{8}\.tmp$")  # as _commit names them


def recover(folder: Path) -> list[str]:
    """Finishes a commit a killed run left half done (its journal), then removes temporary files
    no journal names. Call with the lock held. Returns the tables it completed."""
    folder = Path(folder)
    done = []
    journal = folder / JOURNAL
    if journal.exists():
        for tmp, name in json.loads(journal.read_text())["renames"]:
            if (folder / tmp).exists():
                os.replace(folder / tmp, folder / name)
                done.append(name)
        _sync_dir(folder)
        journal.unlink()
    for leftover in folder.glob(".*"):
        temp = _TEMP.match(leftover.name)
        if (temp and temp["table"] in TABLES) or leftover.name == JOURNAL + ".tmp":
            leftover.unlink(missing_ok=True)
    return done


# ---- the folder as a whole ---------------------------------------------------------------------

def keys(df: pd.DataFrame) -> set[tuple]:
    return set(df[KEY].itertuples(index=False, name=None)) if not df.empty else set()


def consistency(tables: dict[str, pd.DataFrame]) -> list[str]:
    """What makes a set of tables disagree: a counted model without its op or layer rows, or
    rows of a model that is not counted. Each problem is one line."""
    problems = []
    counted = keys(tables["counts.csv"])
    for name in ("ops.csv", "layers.csv"):
        have = keys(tables[name])
        if counted - have:
            problems.append(f"{len(counted - have)} model(s) of counts.csv have no rows in {name} "
                            f"(e.g. {_name(min(counted - have))})")
        if have - counted:
            problems.append(f"{name} holds rows of {len(have - counted)} model(s) that counts.csv "
                            f"lacks (e.g. {_name(min(have - counted))})")
    return problems


def _name(key: tuple) -> str:
    library, arch, weights, img_size = key
    return f"{library}:{arch}.{weights}@{img_size}"
