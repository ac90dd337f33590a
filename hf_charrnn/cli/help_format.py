"""`--help` for the training commands: each option's default shown once, as the value the command will use."""

import argparse


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
