"""How both training commands end: the outcome of a run as a message and an exit code (see `exit_codes`)."""

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import transformers

from ..memorisation import describe_report
from ..reporting import LOSS_CURVE_FILE
from ..run_folder import RunAlreadyComplete
from ..trainer_utils import (
    TrainingDivergedError,
    TrainingInterrupted,
    TrainingSetupError,
)
from .exit_codes import EXIT_DIVERGED, EXIT_OK, EXIT_SIGINT, EXIT_USER_ERROR


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever `sys.stdout` is at the time (it may be replaced between runs, e.g. by pytest)."""

    def emit(self, record):
        self.stream = sys.stdout
        super().emit(record)


def configure_logging(level: int) -> None:
    """hf_charrnn's progress lines on stdout at `level` (at most INFO), and transformers' verbosity to match."""
    handler = _StdoutHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    package_logger = logging.getLogger("hf_charrnn")
    if not package_logger.handlers:
        package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO if level > logging.INFO else level)
    package_logger.propagate = False
    transformers.utils.logging.set_verbosity(level)


def run_and_report(run: Callable[[], dict[str, Any]], output_dir: str) -> int:
    """
    Run a training function for a command line (both training paths): expected failures become one `error:` line
    and an exit status (2 bad input, 1 diverged, 130/143 interrupted); success prints the validation figures and a
    sample, once however many processes `accelerate launch` started.
    """
    try:
        summary = run()
    except RunAlreadyComplete as done:
        print(str(done))
        return EXIT_OK
    except TrainingSetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except TrainingDivergedError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except TrainingInterrupted as error:
        print(str(error), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return EXIT_SIGINT
    if os.environ.get("RANK", "0") == "0":
        print_result(summary, output_dir)
    return EXIT_OK


def print_result(summary: dict[str, Any], output_dir: str) -> None:
    validation = summary["validation"]
    print(f"\nSaved the model, tokenizer, training_summary.json and {LOSS_CURVE_FILE} to {output_dir}")
    print(
        f"Validation: loss {validation['loss']:.4f} nats/token, {validation['bpc']:.4f} bits/character, "
        f"perplexity {validation['perplexity']:.3f}"
    )
    if summary.get("last_step_validation"):
        print(f"Kept the weights of step {summary['kept_step']}, the best evaluation (the last step's validation: "
              f"{summary['last_step_validation']['bpc']:.4f} bits/character).")
    if summary.get("validation_note"):
        print(f"Note: {summary['validation_note']}.")
    memorisation = describe_report(summary.get("memorisation") or {})
    if memorisation:
        print(f"Memorisation: {memorisation}")
    if summary.get("samples"):
        print(f"Sample:\n{summary['samples'][0]['text']}")
