"""The dynamic-evaluation options that `evaluate`, `score` and `generate` share (`hf_charrnn.dynamic_evaluation`):
one dataclass, for the commands whose arguments are dataclasses, and the same options added to an argparse parser."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields

from ..dynamic_evaluation import DynamicEvaluation

DEFAULTS = DynamicEvaluation()


@dataclass(kw_only=True)
class DynamicEvaluationArguments:
    dynamic_evaluation: bool = field(
        default=False,
        metadata={"help": "Adapt the weights to the text while reading it (dynamic evaluation, Krause et al. 2018): "
                          "each segment is scored, then the weights take a step on it. The trained weights are "
                          "restored afterwards."},
    )
    dynamic_learning_rate: float = field(
        default=DEFAULTS.learning_rate, metadata={"help": "Step size of the RMS-normalised update."}
    )
    dynamic_segment_length: int = field(
        default=DEFAULTS.segment_length, metadata={"help": "Tokens read between two updates."}
    )
    dynamic_decay: float = field(
        default=DEFAULTS.decay, metadata={"help": "Share of the way back to the trained weights at each update (0-1)."}
    )

    def dynamic_settings(self) -> DynamicEvaluation | None:
        """The settings when `--dynamic_evaluation` is on (checked: a clear error for a bad value), else None."""
        if not self.dynamic_evaluation:
            return None
        return DynamicEvaluation(learning_rate=self.dynamic_learning_rate, segment_length=self.dynamic_segment_length,
                                 decay=self.dynamic_decay)


def add_dynamic_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `DynamicEvaluationArguments` on an argparse parser (`--dynamic_evaluation` a switch)."""
    group = parser.add_argument_group("dynamic evaluation")
    for option in fields(DynamicEvaluationArguments):
        if option.type in (bool, "bool"):
            group.add_argument(f"--{option.name}", action="store_true", help=option.metadata["help"])
        else:
            kind = float if option.type in (float, "float") else int
            group.add_argument(f"--{option.name}", type=kind, default=option.default,
                               help=f"{option.metadata['help']} (default {option.default:g})")


def dynamic_settings(args: argparse.Namespace) -> DynamicEvaluation | None:
    """`DynamicEvaluationArguments.dynamic_settings` for an argparse namespace."""
    return DynamicEvaluationArguments(**{option.name: getattr(args, option.name)
                                         for option in fields(DynamicEvaluationArguments)}).dynamic_settings()
