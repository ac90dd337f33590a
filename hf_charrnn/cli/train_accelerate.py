"""`hf-charrnn train-accelerate`: stateful truncated-BPTT training with Accelerate (`hf_charrnn.training_accelerate`).

Runs on one CPU/GPU, or on several processes with `accelerate launch scripts/train_accelerate.py ...`.
"""

from __future__ import annotations

import logging
import sys

from transformers import HfArgumentParser

from ..bptt_args import BPTTArguments
from ..training_accelerate import train_bptt
from ..training_args import CorpusArguments, ModelArguments
from .exit_codes import EXIT_USER_ERROR
from .help_format import ValuesUsedHelpFormatter, switches_take_no_value
from .training_outcome import configure_logging, run_and_report


def make_parser() -> HfArgumentParser:
    return switches_take_no_value(HfArgumentParser(
        (ModelArguments, CorpusArguments, BPTTArguments),
        prog="hf-charrnn train-accelerate",
        description="Train a CharRNN the classic char-rnn way with accelerate: one token stream laid out as "
        "--batch_size parallel rows, read --block_size tokens at a time with the recurrent state carried from batch "
        "to batch (stateful truncated BPTT). Without arguments: a 2x512 LSTM on the embedded Shakespeare corpus. "
        "Runs on one CPU/GPU, or on several processes with `accelerate launch`.",
        formatter_class=ValuesUsedHelpFormatter,
    ))


def main(argv: list[str] | None = None) -> int:
    """`hf-charrnn train-accelerate`: stateful truncated-BPTT training with accelerate; returns the exit status."""
    parser = make_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(argv) == 1 and argv[0].endswith(".json"):
            model_args, data_args, args = parser.parse_json_file(argv[0])
        else:
            model_args, data_args, args = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    except ValueError as error:  # the dataclasses' own checks
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    configure_logging(logging.WARNING)  # hf_charrnn's progress and samples; transformers' warnings only
    return run_and_report(lambda: train_bptt(args, model_args, data_args), args.output_dir)
