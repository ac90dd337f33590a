"""The `hf-charrnn` command: one entry point for training, sampling, scoring and sharing models.

Each subcommand is the `main(argv)` of a library module; this file only dispatches to it and turns the errors a
user can fix (a missing file, a bad option) into one readable line instead of a stack trace.
"""

import importlib
import sys

COMMANDS = {
    "demo": ("hf_charrnn.demo", "train the default Shakespeare model on this machine, then sample from it"),
    "train": ("hf_charrnn.training", "train or fine-tune a model with transformers' Trainer"),
    "train-accelerate": (
        "hf_charrnn.training_accelerate",
        "train with Accelerate and stateful truncated BPTT (the classic char-rnn recipe)",
    ),
    "generate": ("hf_charrnn.generate", "sample text from a trained model (folder or Hub id)"),
    "evaluate": ("hf_charrnn.evaluation", "score a model in bits per character on a split or a text file"),
    "push": ("hf_charrnn.hub", "upload a training output folder to the Hub, with a model card"),
}

# Errors that mean "the input is wrong", as opposed to bugs: shown as one line, exit status 2.
USER_ERRORS = (ValueError, FileNotFoundError, OSError, TypeError)


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return (
        "usage: hf-charrnn COMMAND [options]\n\ncommands:\n" + "\n".join(lines) +
        "\n\nRun `hf-charrnn COMMAND --help` for the options of a command."
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, *rest = argv
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    try:
        return module.main(rest) or 0
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
