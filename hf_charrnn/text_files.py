"""Data files as users hand them over: checked before anything reads them, and fingerprinted for the run record.

A text file must be UTF-8: a Latin-1 file or a binary one gets an error that names the file, the byte offset and the
fix, instead of a decoding traceback from deep inside `datasets`. Files of a structured format (.json, .jsonl,
.csv, .tsv, .parquet) are read the way `datasets` and run_clm.py read them, with the text taken from a column.
One pass over each file also computes its SHA-256, so a run can tell whether it is asked to resume on the same data.
"""

from __future__ import annotations

import codecs
import functools
import glob
import hashlib
from pathlib import Path

# Suffix -> the `datasets` builder that reads it (run_clm.py's rule); anything else is plain text.
STRUCTURED_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
BINARY_FORMATS = {".parquet"}  # not text: no UTF-8 check
CHUNK_BYTES = 1 << 20
BINARY_SNIFF_BYTES = 8192


class DataFileError(ValueError):
    """A data file that cannot be used as it is; the message names the file and the fix."""


def builder_for(path: str | Path) -> str:
    """'text', 'json', 'csv' or 'parquet': how `datasets` should read this file."""
    return STRUCTURED_FORMATS.get(Path(path).suffix.lower(), "text")


def builder_of_files(paths: list[str], role: str) -> str:
    builders = {builder_for(path) for path in paths}
    if len(builders) > 1:
        raise DataFileError(
            f"The {role} files mix formats ({', '.join(sorted(builders))}): give files of one kind "
            "(all text, or all .jsonl, ...)."
        )
    return builders.pop()


def _invalid_utf8_message(path: Path, offset: int, chunk: bytes, at: int, role: str) -> str:
    shown = chunk[max(at - 10, 0) : at + 10]
    return (
        f"The {role} file {str(path)!r} is not UTF-8 text: byte {offset} (0x{chunk[at]:02x}, in {shown!r}) is not "
        f"valid UTF-8. Convert it first, e.g. for a Latin-1 file: iconv -f latin1 -t utf-8 {path} > "
        f"{path.with_suffix('')}.utf8{path.suffix}"
    )


def _binary_message(path: Path, role: str) -> str:
    return (f"The {role} file {str(path)!r} is a binary file (it contains NUL bytes), not text. Give a UTF-8 text "
            "file, or a .json/.jsonl/.csv/.parquet file with --text_column.")


def _checked_utf8_chunks(handle, path: Path, role: str):
    """The file's chunks with their decoded text, checked on the way: a NUL byte at its start (a binary file), a byte
    that is not UTF-8, a file that ends in the middle of a character; each a `DataFileError` that names the fix."""
    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    while chunk := handle.read(CHUNK_BYTES):
        if offset == 0 and b"\x00" in chunk[:BINARY_SNIFF_BYTES]:
            raise DataFileError(_binary_message(path, role))
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as error:
            raise DataFileError(_invalid_utf8_message(path, offset + error.start, chunk, error.start, role)) from None
        yield chunk, text
        offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise DataFileError(
            f"The {role} file {str(path)!r} is not UTF-8 text: it ends in the middle of a character (byte "
            f"{offset}). Convert it first, e.g. iconv -f latin1 -t utf-8 {path} > {path.with_suffix('')}.utf8"
            f"{path.suffix}"
        ) from None


def read_text_start(path: str | Path, max_characters: int, role: str) -> str:
    """
    The first `max_characters` characters of a plain UTF-8 text file, and one more if the file has more (so the
    caller can say it was cut), checked as `inspect_file` checks a whole file but reading only what is used: the
    start of a file of any size. Raises `DataFileError` for a data-set format, a binary or non-UTF-8 file, or an
    empty one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The {role} file {str(path)!r} does not exist (or is not a file).")
    if builder_for(path) != "text":
        raise DataFileError(f"The {role} file {str(path)!r} is a {path.suffix} data file; give plain UTF-8 text "
                            "(write its text column to a .txt file first).")
    parts, count = [], 0
    with open(path, "rb") as handle:
        for _, text in _checked_utf8_chunks(handle, path, role):
            parts.append(text)
            count += len(text)
            if count > max_characters:
                break
    if not parts:
        raise DataFileError(f"The {role} file {str(path)!r} is empty: give it some text.")
    return "".join(parts)[: max_characters + 1]


def inspect_file(path: str | Path, role: str) -> dict:
    """
    Check that `path` can be read as what its suffix says (UTF-8 text unless it is binary by format) and return its
    fingerprint `{"path", "bytes", "sha256"}`. Raises `DataFileError` for a binary or non-UTF-8 text file.
    """
    path = Path(path)
    digest, offset = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        chunks = (iter(lambda: handle.read(CHUNK_BYTES), b"") if path.suffix.lower() in BINARY_FORMATS
                  else (chunk for chunk, _ in _checked_utf8_chunks(handle, path, role)))
        for chunk in chunks:
            digest.update(chunk)
            offset += len(chunk)
    return {"path": str(path.resolve()), "bytes": offset, "sha256": digest.hexdigest()}


def resolve_files(spec, role: str) -> list[str]:
    """Expand globs; check that every file exists and is not empty."""
    specs = [spec] if isinstance(spec, (str, Path)) else list(spec)
    if not specs:
        raise ValueError(f"No {role} file given.")
    files: list[str] = []
    for item in map(str, specs):
        if glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise FileNotFoundError(f"The {role} pattern {item!r} matches no file.")
            files.extend(matches)
        elif not Path(item).is_file():
            raise FileNotFoundError(f"The {role} file {item!r} does not exist (or is not a file).")
        else:
            files.append(item)
    for f in files:
        if Path(f).stat().st_size == 0:
            raise ValueError(f"The {role} file {f!r} is empty: give it some text or leave it out.")
        file_fingerprint(f, role)  # binary or non-UTF-8 text: a clear error before datasets reads it
    return [str(Path(f).resolve()) for f in files]


@functools.lru_cache(maxsize=256)
def _cached_fingerprint(path: str, size: int, modified_ns: int, role: str) -> dict:
    return inspect_file(path, role)


def file_fingerprint(path: str | Path, role: str = "data") -> dict:
    """`{"path", "bytes", "sha256"}` of a checked data file (computed once per version of the file)."""
    stat = Path(path).stat()
    return dict(_cached_fingerprint(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, role))


def fingerprint_files(spec, role: str) -> list[dict]:
    """The checked fingerprints of the files a `--train_file` / `--validation_file` value names (globs expanded)."""
    return [file_fingerprint(path, role) for path in resolve_files(spec, role)]
