"""How the commands read their options: `--help` for the training commands (each option's default shown once, as
the value the command will use), and the model-first form of the commands that take a model."""

import argparse
import sys


class ValuesUsedHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """
    The help text's own words when it states a default (values that depend on other options, such as a new model's
    shape), nothing for an unset None, else the parser's default (which the training commands set to their own, not
    TrainingArguments').
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default is None or action.default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def switches_take_no_value(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every yes/no option of `parser` also works as a bare switch (`--disable_tqdm` as `--disable_tqdm true`).

    HfArgumentParser does that for a `bool` field, but an `Optional[bool]` one whose default is None (TrainingArguments'
    `disable_tqdm`, our `load_best_model_at_end`, which a later check fills in) is left wanting a value, so the bare
    switch failed with "expected one argument"."""
    from transformers.hf_argparser import string_to_bool

    for action in parser._actions:
        if action.type is string_to_bool and action.nargs is None:
            action.nargs, action.const = "?", True
    return parser


def parse_model_command(arguments_class, argv: list[str] | None, prog: str, description: str):
    """The arguments dataclass of a command that takes a model (`evaluate`, `score`): the model may come first,
    without its option name (`hf-charrnn score MODEL --text ...`)."""
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):
        argv = ["--model_name_or_path", argv[0], *argv[1:]]
    parser = HfArgumentParser(arguments_class, prog=prog, description=description)
    (args,) = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    return args
