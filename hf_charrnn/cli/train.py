"""`hf-charrnn train`: train or fine-tune a CharRNN with transformers' Trainer (the library side: `hf_charrnn.training`).

Options are run_clm.py's: ModelArguments, DataArguments and every TrainingArguments option, on the command line or in
one .json/.yaml file. This command's defaults differ from TrainingArguments' (a char-RNN wants a larger learning rate,
a cosine schedule, batches of 64 blocks; see `TRAINING_DEFAULTS`), and --help shows the values that will be used.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from transformers import HfArgumentParser, TrainingArguments

from ..trainer import train
from ..training_args import DataArguments, ModelArguments, training_defaults
from .exit_codes import EXIT_USER_ERROR
from .help_format import ValuesUsedHelpFormatter
from .training_outcome import configure_logging, run_and_report


def make_parser() -> HfArgumentParser:
    parser = HfArgumentParser(
        (ModelArguments, DataArguments, TrainingArguments),
        prog="hf-charrnn train",
        description="Train a CharRNN language model (LSTM/GRU/RNN) with transformers' Trainer. Without arguments it "
        "trains a 2x512 LSTM on the embedded Shakespeare corpus; every TrainingArguments option works as well "
        "(e.g. --max_steps, --learning_rate, --per_device_train_batch_size, --resume_from_checkpoint).",
        formatter_class=ValuesUsedHelpFormatter,
    )
    parser.set_defaults(**training_defaults(set()))  # this command's defaults, also what --help shows
    return parser


def explicit_options(argv: Sequence[str]) -> set[str]:
    """Names of the options present on the command line (`--foo 1`, `--foo=1`, `--no_foo` count for `foo`)."""
    names = set()
    for token in argv:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0].replace("-", "_")
            names.add(name)
            if name.startswith("no_"):
                names.add(name[3:])
    return names


def _read_options_file(path: Path) -> dict:
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def parse_arguments(argv: Sequence[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """Parse the command line (or a single .json/.yaml file of options), filling in this command's defaults."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        options = _read_options_file(Path(argv[0]))
        early = options.get("early_stopping_patience") is not None
        merged = {**training_defaults(set(options), early), **options}
        if "eval_steps" in options and "save_steps" not in options:
            merged["save_steps"] = options["eval_steps"]
        return parser.parse_dict(merged)

    namespace, _ = parser.parse_known_args(argv)  # validates the flags (argparse exits with 2 on a bad one)
    explicit = explicit_options(argv)
    defaults = training_defaults(explicit, early_stopping=namespace.early_stopping_patience is not None)
    if "eval_steps" in explicit and "save_steps" not in explicit:
        defaults["save_steps"] = namespace.eval_steps
    parser.set_defaults(**defaults)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    return model_args, data_args, training_args


def main(argv: list[str] | None = None) -> int:
    """`hf-charrnn train`: train a CharRNN with transformers' Trainer; returns the exit status."""
    try:
        model_args, data_args, training_args = parse_arguments(argv)
    except ValueError as error:  # TrainingArguments' own checks
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    configure_logging(training_args.get_process_log_level())
    return run_and_report(lambda: train(model_args, data_args, training_args), training_args.output_dir)
