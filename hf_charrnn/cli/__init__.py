"""The `hf-charrnn` command: one entry point for training, sampling, scoring and sharing models.

Each subcommand is the `main(argv)` of a module of this package (`hf_charrnn/cli/<command>.py`, the only place that
parses options); this file dispatches to it and decides how a failure is shown (codes in `exit_codes`). Errors the project raises on purpose (its own checks of options, files and data, in hf_charrnn's code) and
operating-system errors (a missing file or folder, no network) are the user's to fix: one `error:` line, exit 2.
Anything else is a bug, in hf_charrnn or in how it uses a dependency: a short traceback that says so and asks for
the output of `hf-charrnn env`, exit 1. A bug must never read like a user mistake.
"""

import importlib
import sys
import traceback
from pathlib import Path

from ..time_budget import count_from_process_start
from .exit_codes import EXIT_BUG, EXIT_OK, EXIT_SIGINT, EXIT_USER_ERROR

COMMANDS = {
    "demo": ("hf_charrnn.cli.demo", "train the default Shakespeare model on this machine, then sample from it"),
    "train": ("hf_charrnn.cli.train", "train or fine-tune a model with transformers' Trainer"),
    "train-accelerate": (
        "hf_charrnn.cli.train_accelerate",
        "train with Accelerate and stateful truncated BPTT (the classic char-rnn recipe)",
    ),
    "generate": ("hf_charrnn.cli.generate", "sample text from a trained model (folder or Hub id)"),
    "evaluate": ("hf_charrnn.cli.evaluate", "score a model in bits per character on a split or a text file"),
    "score": ("hf_charrnn.cli.score", "log-probability, bits per character and surprisal of given texts or lines"),
    "explain": ("hf_charrnn.cli.explain", "an HTML page of a model's neuron activations and next-character guesses"),
    "push": ("hf_charrnn.cli.push", "upload a training output folder to the Hub, with a model card"),
    "export": ("hf_charrnn.cli.export", "export a model to ONNX (decode step and prompt pass), checked with onnxruntime"),
    "env": ("hf_charrnn.cli.env", "print the versions and device to include in a bug report"),
}

# What the project's own checks raise: a user error when a `raise` in hf_charrnn's code raised it (raised_on_purpose).
CHECK_ERRORS = (ValueError, TypeError)
PACKAGE_DIRECTORY = Path(__file__).resolve().parent.parent
# The model's files also run as remote code, copied next to a checkpoint and imported from the Hub module cache.
MODEL_FILE_NAMES = ("configuration_charrnn.py", "modeling_charrnn.py")
TRACEBACK_FRAMES = 6  # the innermost frames of a bug's traceback: where it happened, without the launch machinery


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return (
        "usage: hf-charrnn COMMAND [options]\n\ncommands:\n" + "\n".join(lines) +
        "\n\nRun `hf-charrnn COMMAND --help` for the options of a command."
    )


def raised_on_purpose(error: BaseException) -> bool:
    """
    Whether a `raise` statement in hf_charrnn's own code (or its remote-code copy) raised the error, as opposed to a
    library, or Python itself on a faulty line of ours (`None(...)` is a TypeError too).
    """
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return False
    innermost = frames[-1]
    path = Path(innermost.filename).resolve()
    in_project = PACKAGE_DIRECTORY in path.parents or path.name in MODEL_FILE_NAMES
    return in_project and (innermost.line or "").lstrip().startswith("raise")


def is_user_error(error: BaseException) -> bool:
    """Operating-system errors, and the checks hf_charrnn makes on purpose; never an error from inside a library."""
    if isinstance(error, OSError):
        return True
    return isinstance(error, CHECK_ERRORS) and raised_on_purpose(error)


def report_bug(error: BaseException) -> None:
    """A short traceback, then what it means and what to send."""
    traceback.print_exception(type(error), error, error.__traceback__, limit=-TRACEBACK_FRAMES, file=sys.stderr)
    print(
        f"\nerror: this is a bug in hf_charrnn, not a mistake in your command ({type(error).__name__}: {error}).\n"
        "Please report it with the command you ran, the traceback above and the output of `hf-charrnn env`.",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the command itself (not a call from Python code): a time budget counts from the process start
        count_from_process_start()
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return EXIT_OK
    command, *rest = argv
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        module = importlib.import_module(COMMANDS[command][0])
        return module.main(rest) or EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_SIGINT
    except Exception as error:  # noqa: BLE001 - every failure is shown, the question is only how
        if is_user_error(error):
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USER_ERROR
        report_bug(error)
        return EXIT_BUG

