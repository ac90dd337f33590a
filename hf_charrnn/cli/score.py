"""`hf-charrnn score`: the log-probability, bits per character and (optionally) per-token surprisal of given texts,
one JSON object per text or line. The scoring is `hf_charrnn.scoring`; this module reads what to score and checks
it. For one figure over a whole corpus, `hf-charrnn evaluate` reads files of any size in pieces."""

from __future__ import annotations

import contextlib
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import text_files
from ..evaluation import DEFAULT_CHUNK_LENGTH
from ..model_loading import load_model_and_tokenizer
from ..scoring import score_texts
from ..tokenization_charrnn import count_unknown_characters, is_char_level, unknown_warning
from .dynamic_options import DynamicEvaluationArguments
from .help_format import parse_model_command
from .text_input import text_from_option

MAX_WHOLE_FILE_BYTES = 64 * 2**20  # a file scored as one text is read whole (with --per_line: line by line)
LINES_PER_BATCH = 4096  # lines scored and printed together


@dataclass
class ScoreArguments(DynamicEvaluationArguments):
    model_name_or_path: str = field(
        metadata={"help": "A saved model folder (from save_pretrained or a training run) or a Hub repo id."}
    )
    text: str | None = field(default=None, metadata={"help": "The text to score ('-' reads standard input)."})
    text_file: str | None = field(default=None, metadata={"help": "A UTF-8 text file to score, whole or by line."})
    per_line: bool = field(
        default=False, metadata={"help": "Score each line on its own (names, titles, records); empty lines skipped."}
    )
    surprisal: bool = field(
        default=False, metadata={"help": "Also give each token's surprisal in bits (each character's, with a "
                                         "character tokenizer)."}
    )
    with_end: bool = field(
        default=False,
        metadata={"help": "Also score the end of each text (<eos>): the probability of the text as a whole, not as "
                          "the start of something longer. `hf-charrnn evaluate` scores the end too."},
    )
    batch_size: int = field(default=32, metadata={"help": "Texts scored together (right-padded; same results)."})
    chunk_length: int = field(
        default=DEFAULT_CHUNK_LENGTH, metadata={"help": "Tokens fed per forward call (the state is carried)."}
    )
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: cuda when available)."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit)."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow loading model code from the checkpoint (needed without hf_charrnn)."}
    )
    output_file: str | None = field(default=None, metadata={"help": "Also write the JSON lines to this file."})

    def __post_init__(self):
        if (self.text is None) == (self.text_file is None):
            raise ValueError("Say what to score: --text TEXT or --text_file FILE (one of them).")
        if self.batch_size < 1 or self.chunk_length < 1:
            raise ValueError("--batch_size and --chunk_length must be at least 1.")
        self.dynamic_settings()  # a bad value is named before the model loads


def text_to_read(args: ScoreArguments) -> tuple[str | None, str | None]:
    """`(path, None)` of a checked text file, or `(None, text)`: read before the model is loaded, so a mistake shows
    at once. A file scored whole must fit in memory as one text; corpus-level figures of any size are `evaluate`'s."""
    if args.text_file is None:
        text = text_from_option(args.text, "--text")
        if not text:
            raise ValueError("The text to score is empty.")
        return None, text
    paths = text_files.resolve_files(args.text_file, "text")  # exist, not empty, UTF-8: or a clear error
    if len(paths) != 1:
        raise ValueError(f"--text_file {args.text_file} matches {len(paths)} files; score one file at a time (or "
                         "join them: cat a.txt b.txt > all.txt).")
    path = paths[0]
    size = Path(path).stat().st_size
    if not args.per_line and size > MAX_WHOLE_FILE_BYTES:
        raise ValueError(
            f"{args.text_file} is {size / 2**20:.0f} MB: too large to score as one text here. For its bits per "
            f"character use `hf-charrnn evaluate MODEL --text_file {args.text_file}` (any size, read in pieces), or "
            "score it line by line with --per_line."
        )
    return path, None


def batches_to_score(args: ScoreArguments, path: str | None, text: str | None) -> Iterator[tuple[list, list]]:
    """The texts in batches, each with what to print beside its result to say which text it is; lines of a file
    are read as they come (any number of them)."""
    if not args.per_line:
        if path is not None:
            yield [Path(path).read_text(encoding="utf-8")], [{"text_file": args.text_file}]
        else:
            yield [text], [{"text": text}]
        return
    if path is None:
        yield from _numbered_batches(text.split("\n"))
        return
    with open(path, encoding="utf-8") as file:
        yield from _numbered_batches(line.rstrip("\n") for line in file)


def _numbered_batches(lines: Iterable[str]) -> Iterator[tuple[list, list]]:
    """Non-empty lines with their numbers (from 1), `LINES_PER_BATCH` at a time; none at all is an error."""
    texts, labels, any_line = [], [], False
    for number, line in enumerate(lines, start=1):
        if line:
            texts.append(line)
            labels.append({"line": number, "text": line})
        if len(texts) == LINES_PER_BATCH:
            yield texts, labels
            texts, labels, any_line = [], [], True
    if texts:
        yield texts, labels
    elif not any_line:
        raise ValueError("There is no line with text to score.")


def warn_about_unknown_characters(tokenizer, unknown: Counter) -> None:
    unit = "characters" if is_char_level(tokenizer) else "words"
    message = unknown_warning(unknown, unit=unit)
    if message:
        print(f"warning: {message} (their scores say little)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """`hf-charrnn score MODEL --text T | --text_file F [--per_line] [--surprisal] [--with_end]`: JSON lines."""
    args = parse_model_command(
        ScoreArguments, argv, prog="hf-charrnn score",
        description="Score texts with a CharRNN checkpoint: each text's log-probability (natural log), bits, bits per "
        "character and, with --surprisal, each character's surprisal in bits; one JSON object per line of output. "
        "Usage: score MODEL --text 'To be, or not to be' | --text_file FILE [--per_line].",
    )
    path, text = text_to_read(args)
    model, tokenizer = load_model_and_tokenizer(args.model_name_or_path, revision=args.revision, device=args.device,
                                                trust_remote_code=args.trust_remote_code)
    unknown = Counter()
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(open(args.output_file, "w", encoding="utf-8")) if args.output_file else None
        for texts, labels in batches_to_score(args, path, text):
            unknown.update(count_unknown_characters(tokenizer, texts))
            results = score_texts(model, tokenizer, texts, with_end=args.with_end, surprisal=args.surprisal,
                                  batch_size=args.batch_size, chunk_length=args.chunk_length,
                                  dynamic=args.dynamic_settings())
            lines = "\n".join(json.dumps({**label, **result}, ensure_ascii=False)
                              for label, result in zip(labels, results))
            print(lines, flush=True)
            if output is not None:
                output.write(lines + "\n")
    warn_about_unknown_characters(tokenizer, unknown)
    return 0
