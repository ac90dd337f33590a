"""
How much of what a model writes is copied from its training text (the memorisation report).

Small models trained for many epochs reproduce their training text verbatim, and a sample that reads well may be a
quotation. After training, a few seeded samples are compared with the training text: the longest span copied
verbatim, and the share of sampled characters that lie inside copied spans of at least `MIN_COPIED_SPAN` (20)
characters. Each 20-character window of the training text is hashed (a 64-bit polynomial hash, vectorised with
numpy) and sorted once, so every window of a sample is looked up by binary search; a window found is checked
character by character and extended as far as sample and training text agree. The 4 MB embedded corpus is indexed
in about a second. Spans shorter than 20 characters are common words and phrases, not memorisation; the longest span
is still exact below 20 (a search over the span length).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from .reporting import seeded_sampling
from .scoring import document_start_id

MIN_COPIED_SPAN = 20
MAX_INDEXED_CHARACTERS = 16_000_000  # 16 M windows: 256 MB of index; a larger corpus is checked against its start
MAX_PLACES_CHECKED = 512  # places a window occurs that are extended (a very common window is cut there)
REPORT_SAMPLES, REPORT_SAMPLE_LENGTH = 4, 300  # the seeded samples a training run's report is made from
_BASE = np.uint64(0x100000001B3)


def _codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)


def _members(values: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    """Which `values` occur in `sorted_values`, by binary search (np.isin hashes the large side first: 10x slower)."""
    places = np.searchsorted(sorted_values, values)
    found = places < len(sorted_values)
    found[found] = sorted_values[places[found]] == values[found]
    return found


def window_hashes(codes: np.ndarray, width: int) -> np.ndarray:
    """The hash of every `width`-character window of `codes` (arithmetic modulo 2**64)."""
    count = len(codes) - width + 1
    hashes = np.zeros(max(count, 0), dtype=np.uint64)
    if count <= 0:
        return hashes
    with np.errstate(over="ignore"):
        for offset in range(width):
            hashes = hashes * _BASE + codes[offset : offset + count].astype(np.uint64)
    return hashes


class TrainingTextIndex:
    """Where each `width`-character window of a text occurs, by hash."""

    def __init__(self, text: str, width: int = MIN_COPIED_SPAN):
        self.text, self.width = text, width
        self.codes = _codes(text)
        hashes = window_hashes(self.codes, width)
        self.order = np.argsort(hashes, kind="stable")
        self.sorted_hashes = hashes[self.order]

    def longest_copy_at(self, sample: str, start: int, window_hash: np.uint64) -> int:
        """The longest span of `sample` from `start` that the text contains (0 when its window is not there)."""
        low = int(np.searchsorted(self.sorted_hashes, window_hash, side="left"))
        high = int(np.searchsorted(self.sorted_hashes, window_hash, side="right"))
        best, width, rest = 0, self.width, sample[start + self.width :]
        window = sample[start : start + width]
        for place in self.order[low : min(high, low + MAX_PLACES_CHECKED)]:
            place = int(place)
            if self.text[place : place + width] != window:
                continue  # a hash collision
            same = os.path.commonprefix([self.text[place + width : place + width + len(rest)], rest])
            best = max(best, width + len(same))
        return best

    def contains_any_window(self, samples: Sequence[str], width: int) -> bool:
        """Whether some `width`-character window of the samples occurs in the text (any width, hashed afresh)."""
        text_hashes = np.sort(window_hashes(self.codes, width))
        for sample in samples:
            found = _members(window_hashes(_codes(sample), width), text_hashes)
            for start in np.flatnonzero(found):
                if sample[start : start + width] in self.text:  # checked: no hash collision
                    return True
        return False


def copied_spans(index: TrainingTextIndex, sample: str) -> list[tuple[int, int]]:
    """`(start, length)` of the longest copy starting at each position of `sample` that begins a copied window."""
    hashes = window_hashes(_codes(sample), index.width)
    present = _members(hashes, index.sorted_hashes)
    spans = []
    for start in np.flatnonzero(present):
        length = index.longest_copy_at(sample, int(start), hashes[start])
        if length:
            spans.append((int(start), length))
    return spans


def memorisation_report(samples: Sequence[str], training_text: str, min_span: int = MIN_COPIED_SPAN,
                        whole: bool = True) -> dict:
    """
    `{"samples", "sampled_characters", "longest_copied_span", "longest_copied_text", "copied_share", "min_span",
    "indexed_characters", "whole_training_text"}`: the longest span of any sample found verbatim in `training_text`,
    and the share of sampled characters inside copied spans of at least `min_span` characters. `whole`: whether
    `training_text` is all of the training text, or its start.
    """
    index = TrainingTextIndex(training_text, min_span)
    longest, longest_text, covered_total = 0, "", 0
    for sample in samples:
        covered = np.zeros(len(sample), dtype=bool)
        for start, length in copied_spans(index, sample):
            covered[start : start + length] = True
            if length > longest:
                longest, longest_text = length, sample[start : start + length]
        covered_total += int(covered.sum())
    if longest == 0:  # no copy of min_span characters: the longest shorter one, by bisection on its length
        low, high = 0, min_span - 1
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if index.contains_any_window(samples, middle) else (low, middle - 1)
        longest = low
    sampled = sum(len(sample) for sample in samples)
    return {
        "samples": len(samples), "sampled_characters": sampled, "longest_copied_span": longest,
        "longest_copied_text": longest_text, "copied_share": covered_total / sampled if sampled else 0.0,
        "min_span": min_span, "indexed_characters": len(training_text), "whole_training_text": whole,
    }


def bounded_training_text(texts: Iterable[str], limit: int = MAX_INDEXED_CHARACTERS) -> tuple[str, bool]:
    """The training text to index: its first `limit` characters (rows joined by NUL, which no text file holds, so no
    span is counted across two of them), and whether that is all of it. Reading stops there: a 1 GB corpus is not
    read to the end for a report on its start."""
    kept, size = [], 0
    for text in texts:
        if size + len(text) > limit:
            kept.append(text[: limit - size])
            return "\0".join(kept), False
        kept.append(text)
        size += len(text)
    return "\0".join(kept), True


@torch.no_grad()
def seeded_samples(model, tokenizer, count: int, length: int, seed: int) -> list[str]:
    """`count` samples of up to `length` tokens from the start of a document, with the model's generation settings;
    seeded, and the global random state left as it was (the report must not change a training run)."""
    start = torch.tensor([[document_start_id(tokenizer)]], device=next(model.parameters()).device)
    with seeded_sampling(model, seed):
        output = model.generate(start, attention_mask=torch.ones_like(start), do_sample=True, max_new_tokens=length,
                                num_return_sequences=count, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.batch_decode(output[:, 1:], skip_special_tokens=True)


def training_run_report(model, tokenizer, training_texts: Iterable[str], seed: int) -> dict:
    """The memorisation report of a trained model: `REPORT_SAMPLES` seeded samples against its training text."""
    text, whole = bounded_training_text(training_texts)
    samples = seeded_samples(model, tokenizer, REPORT_SAMPLES, REPORT_SAMPLE_LENGTH, seed)
    return {**memorisation_report(samples, text, whole=whole), "seed": seed}


def describe_report(report: dict) -> str | None:
    """One sentence for people (the model card, the end of training), or None for a report that is not one."""
    try:
        share, longest, samples = float(report["copied_share"]), int(report["longest_copied_span"]), report["samples"]
        sampled, min_span = int(report["sampled_characters"]), int(report["min_span"])
    except (KeyError, TypeError, ValueError):
        return None
    partial = ("" if report.get("whole_training_text", True) else
               f" (checked against the first {report['indexed_characters']:,} characters of the training text)")
    return (f"Of {sampled:,} characters in {samples} seeded samples, {share:.1%} lie in spans of {min_span} or more "
            f"characters copied verbatim from the training text; the longest copied span is {longest} characters"
            f"{partial}.")


__all__ = ["MIN_COPIED_SPAN", "TrainingTextIndex", "copied_spans", "memorisation_report", "bounded_training_text",
           "window_hashes", "seeded_samples", "training_run_report", "describe_report"]
