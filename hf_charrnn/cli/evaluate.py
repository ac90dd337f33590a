"""`hf-charrnn evaluate`: loss, bits per character and perplexity of a checkpoint, printed as JSON.

The scoring itself is `hf_charrnn.evaluation` (the state carried over the whole text); this module decides what to
score and checks it: text files (UTF-8, not empty), a named data set's split, or, when the command names no data,
the data the model was trained on as its training folder recorded it (never silently the embedded corpus).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import text_files, text_pieces
from ..dynamic_evaluation import evaluate_dataset_dynamically
from ..evaluation import DEFAULT_CHUNK_LENGTH, evaluate_dataset
from ..model_loading import load_model_and_tokenizer
from ..tokenization_charrnn import (
    count_unknown_characters,
    is_char_level,
    unknown_warning,
)
from ..trainer_utils import dataset_label, load_corpus, load_raw_data, recorded_data_arguments, training_texts
from .dynamic_options import DynamicEvaluationArguments
from .help_format import parse_model_command


@dataclass
class EvaluateArguments(DynamicEvaluationArguments):
    model_name_or_path: str = field(
        metadata={"help": "A saved model folder (from save_pretrained or a training run) or a Hub repo id."}
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "What to score: 'shakespeare' (the embedded corpus, split by play), 'shakespeare:<play-slug>' "
            "(one play cut 90/5/5), or any datasets name / local data folder / save_to_disk folder. Without it "
            "(and without --text_file): the data the model was trained on, as its training folder recorded it."
        },
    )
    text_file: list[str] | None = field(
        default=None,
        metadata={"help": "Score these text files instead of a data set (each one a document; --split is ignored)."},
    )
    split: str = field(
        default="validation", metadata={"help": "Split to score (of --dataset, or of the recorded data)."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Data set configuration name."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text in a named data set."})
    max_documents: int | None = field(default=None, metadata={"help": "Score only the first this-many documents."})
    chunk_length: int = field(
        default=DEFAULT_CHUNK_LENGTH, metadata={"help": "Tokens fed per forward call (the state is carried)."}
    )
    batch_size: int = field(
        default=1,
        metadata={
            "help": "Rows scored in parallel. 1 = the exact single-pass score; more is faster and restarts the "
            "state at each row start (a slightly different score)."
        },
    )
    device: str = field(default="auto", metadata={"help": "'auto' (cuda when available), 'cpu', 'cuda', 'cuda:1'..."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit)."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow loading model code from the checkpoint (needed without hf_charrnn)."}
    )
    output_file: str | None = field(default=None, metadata={"help": "Also write the JSON result to this file."})

    def __post_init__(self):
        if self.dynamic_settings() is not None and self.batch_size != 1:
            raise ValueError("--dynamic_evaluation reads the text as one stream, learning as it goes: leave out "
                             f"--batch_size {self.batch_size} (or give 1).")


def choose_texts(args: EvaluateArguments) -> tuple[Any, dict]:
    """What to score, and how to describe it: text files, a named data set's split, or the model's recorded data."""
    if args.text_file:
        for path in args.text_file:
            text_files.file_fingerprint(path, "text")  # binary or non-UTF-8: a clear error naming the byte
        return text_pieces.load_pieces(list(args.text_file)), {"text_file": args.text_file}  # any size
    if args.dataset:
        splits = load_corpus(args.dataset, args.dataset_config_name, text_column=args.text_column)
        if args.split not in splits:
            raise ValueError(f"The data set {args.dataset!r} has no split {args.split!r}; it has {sorted(splits)}.")
        return splits[args.split], {"dataset": args.dataset, "split": args.split}
    recorded = recorded_data_arguments(args.model_name_or_path)
    if recorded is None:
        raise ValueError(
            f"Say what to score: --text_file FILE, or --dataset NAME [--split {args.split}]. "
            f"{args.model_name_or_path!r} does not record the data it was trained on (only a training output "
            "folder does)."
        )
    data_args, seed = recorded
    splits = load_raw_data(data_args, seed=seed)
    if args.split not in splits:
        raise ValueError(f"The model's training data ({dataset_label(data_args)}) has no {args.split!r} split; it "
                         f"has {sorted(splits)}.")
    return splits[args.split], {"recorded_data": dataset_label(data_args), "split": args.split}


def first_documents(texts, count: int):
    """The rows of the first `count` documents (a document may be several rows: `hf_charrnn.text_pieces`)."""
    if "document_end" not in texts.column_names:
        return texts.select(range(min(count, len(texts))))
    ends = np.flatnonzero(np.asarray(texts["document_end"]))
    return texts.select(range(ends[count - 1] + 1 if count <= len(ends) else len(texts)))


def check_scorable(tokenizer, texts) -> None:
    """Refuse empty text; warn, with the share, when characters of the text are not in the vocabulary."""
    pieces = training_texts(texts)  # read row by row, each time
    characters = sum(len(text) for text in pieces)
    if characters == 0:
        raise ValueError("The text to score is empty: give a file or split with some text in it.")
    unknown = count_unknown_characters(tokenizer, pieces)
    message = unknown_warning(unknown, unit="characters" if is_char_level(tokenizer) else "words")
    if message:
        share = sum(unknown.values()) / characters if is_char_level(tokenizer) else None
        shown = f" ({share:.1%} of the text; the score is not meaningful for them)" if share is not None else ""
        print(f"warning: {message}{shown}", file=sys.stderr)


def dynamic_report(model, tokenizer, texts, args: EvaluateArguments) -> dict:
    """The same texts scored with dynamic evaluation: its figures, settings and time, beside the static ones."""
    settings = args.dynamic_settings()
    started = time.perf_counter()
    result = evaluate_dataset_dynamically(model, tokenizer, texts, settings)
    return {**result, **asdict(settings), "seconds": round(time.perf_counter() - started, 3)}


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def main(argv: list[str] | None = None) -> int:
    """`hf-charrnn evaluate`: loss, bits per character and perplexity of a checkpoint, printed as JSON."""
    args = parse_model_command(
        EvaluateArguments, argv, prog="hf-charrnn evaluate",
        description="Score a CharRNN checkpoint (a local folder or a Hub id): loss (nats/token), bits per character "
        "and perplexity, computed with the recurrent state carried over the whole text. Prints JSON. "
        "Usage: evaluate MODEL [--dataset shakespeare --split validation | --text_file FILE ...].",
    )
    model, tokenizer = load_model_and_tokenizer(
        args.model_name_or_path, revision=args.revision, device=str(_resolve_device(args.device)),
        trust_remote_code=args.trust_remote_code,
    )
    texts, source = choose_texts(args)
    if args.max_documents is not None and hasattr(texts, "select"):
        texts = first_documents(texts, args.max_documents)
    check_scorable(tokenizer, texts)
    started = time.perf_counter()
    result = evaluate_dataset(model, tokenizer, texts, chunk_length=args.chunk_length, batch_size=args.batch_size)
    seconds = time.perf_counter() - started
    report = {
        "model": args.model_name_or_path,
        **source,
        **result,
        "chunk_length": args.chunk_length,
        "batch_size": args.batch_size,
        "seconds": round(seconds, 3),
        "characters_per_second": round(result["characters"] / seconds, 1) if seconds > 0 else None,
    }
    if args.dynamic_settings() is not None:
        report["dynamic_evaluation"] = dynamic_report(model, tokenizer, texts, args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.output_file:
        Path(args.output_file).write_text(text + "\n", encoding="utf-8")
    return 0
