"""`hf-charrnn train`: train or fine-tune a CharRNN with transformers' Trainer (the library side: `hf_charrnn.training`).

Options are run_clm.py's: ModelArguments, DataArguments and every TrainingArguments option, on the command line or in
one .json/.yaml file. The defaults are `CharRNNTrainingArguments`' (a char-RNN wants a larger learning rate, a cosine
schedule, batches of 64 blocks), and --help shows the values that will be used.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from transformers import HfArgumentParser

from ..trainer import train
from ..training_args import CharRNNTrainingArguments, DataArguments, ModelArguments
from .exit_codes import EXIT_USER_ERROR
from .help_format import ValuesUsedHelpFormatter, switches_take_no_value
from .training_outcome import configure_logging, run_and_report


def make_parser() -> HfArgumentParser:
    return switches_take_no_value(HfArgumentParser(
        (ModelArguments, DataArguments, CharRNNTrainingArguments),
        prog="hf-charrnn train",
        description="Train a CharRNN language model (LSTM/GRU/RNN) with transformers' Trainer. Without arguments it "
        "trains a 2x512 LSTM on the embedded Shakespeare corpus; every TrainingArguments option works as well "
        "(e.g. --max_steps, --learning_rate, --per_device_train_batch_size, --resume_from_checkpoint).",
        formatter_class=ValuesUsedHelpFormatter,
    ))


def parse_arguments(
    argv: Sequence[str] | None = None,
) -> tuple[ModelArguments, DataArguments, CharRNNTrainingArguments]:
    """Parse the command line, or a single .json/.yaml file of options (run_clm.py's two ways)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(argv[0])
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(argv[0])
    return parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)


def main(argv: list[str] | None = None) -> int:
    """`hf-charrnn train`: train a CharRNN with transformers' Trainer; returns the exit status."""
    try:
        model_args, data_args, training_args = parse_arguments(argv)
    except ValueError as error:  # TrainingArguments' own checks
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    configure_logging(training_args.get_process_log_level())
    return run_and_report(lambda: train(model_args, data_args, training_args), training_args.output_dir)
