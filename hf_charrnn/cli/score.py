"""`hf-charrnn score`: the log-probability, bits per character and (optionally) per-token surprisal of given texts,
one JSON object per text or line. The scoring is `hf_charrnn.scoring`; this module reads what to score and checks
it. For one figure over a whole corpus, `hf-charrnn evaluate` reads files of any size in pieces."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import text_files
from ..evaluation import DEFAULT_CHUNK_LENGTH
from ..model_loading import load_model_and_tokenizer
from ..scoring import score_texts
from ..tokenization_charrnn import count_unknown_characters, is_char_level, unknown_warning
from .help_format import parse_model_command


@dataclass
class ScoreArguments:
    model_name_or_path: str = field(
        metadata={"help": "A saved model folder (from save_pretrained or a training run) or a Hub repo id."}
    )
    text: str | None = field(default=None, metadata={"help": "The text to score ('-' reads standard input)."})
    text_file: str | None = field(default=None, metadata={"help": "A UTF-8 text file to score, whole or by line."})
    per_line: bool = field(
        default=False, metadata={"help": "Score each line on its own (names, titles, records); empty lines skipped."}
    )
    surprisal: bool = field(default=False, metadata={"help": "Also give each character's surprisal, in bits."})
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


def texts_to_score(args: ScoreArguments) -> tuple[list[str], list[dict]]:
    """The texts, and what to print with each result to say which text it is."""
    if args.text_file is not None:
        (path,) = text_files.resolve_files(args.text_file, "text")  # exists, not empty, UTF-8: or a clear error
        text = Path(path).read_text(encoding="utf-8")
    else:
        text = sys.stdin.read() if args.text == "-" else args.text
    if not text:
        raise ValueError("The text to score is empty.")
    if not args.per_line:
        label = {"text_file": args.text_file} if args.text_file is not None else {"text": text}
        return [text], [label]
    numbered = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line]
    if not numbered:
        raise ValueError("There is no line with text to score.")
    return [line for _, line in numbered], [{"line": number, "text": line} for number, line in numbered]


def warn_about_unknown_characters(tokenizer, texts: list[str]) -> None:
    unit = "characters" if is_char_level(tokenizer) else "words"
    message = unknown_warning(count_unknown_characters(tokenizer, texts), unit=unit)
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
    texts, labels = texts_to_score(args)
    model, tokenizer = load_model_and_tokenizer(args.model_name_or_path, revision=args.revision, device=args.device,
                                                trust_remote_code=args.trust_remote_code)
    warn_about_unknown_characters(tokenizer, texts)
    results = score_texts(model, tokenizer, texts, with_end=args.with_end, surprisal=args.surprisal,
                          batch_size=args.batch_size, chunk_length=args.chunk_length)
    lines = [json.dumps({**label, **result}, ensure_ascii=False) for label, result in zip(labels, results)]
    print("\n".join(lines))
    if args.output_file:
        Path(args.output_file).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0
