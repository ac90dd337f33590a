"""Which units track simple properties of a text: the quote-detecting and line-length cells of Karpathy's
"Visualizing and Understanding Recurrent Networks", found the same way, by correlating every unit's activation with
each property over the positions of a text.

A property's value at position i describes the text *after reading token i*, the moment the state at i describes:
inside quotes (a `"` or `“` opened and not yet closed), inside brackets (more of `([{` read than of `)]}`), position
in the line (characters since the last newline), inside a word (the token ends with a letter or digit), after a
newline (the token read ends a line, so the next one starts a line).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .activations import STATE_KINDS, TextActivations

OPENING_QUOTES, CLOSING_QUOTES = '"“', '"”'
OPENING_BRACKETS, CLOSING_BRACKETS = "([{", ")]}"
MIN_POSITIONS = 20  # below this a correlation says nothing (on 3 positions every unit that moves correlates +-1)
MIN_MINORITY = 3  # positions a property must differ from its most common value at, to be ranked


@dataclass(frozen=True)
class UnitCorrelation:
    """One unit (`layer` and `unit` from 0, `kind` 'hidden' or 'cell') and its Pearson correlation with a property."""

    layer: int
    kind: str
    unit: int
    correlation: float


def _scan(tokens: Sequence[str], step: Callable[[float, str], float]) -> list[float]:
    """A running value over the characters of the tokens, read after each token."""
    values, value = [], 0.0
    for token in tokens:
        for character in token:
            value = step(value, character)
        values.append(value)
    return values


def _quote_step(inside: float, character: str) -> float:
    if inside and character in CLOSING_QUOTES:
        return 0.0
    return 1.0 if character in OPENING_QUOTES else inside


def _bracket_step(depth: float, character: str) -> float:
    if character in OPENING_BRACKETS:
        return depth + 1
    return max(depth - 1, 0.0) if character in CLOSING_BRACKETS else depth


PROPERTIES: dict[str, Callable[[Sequence[str]], list[float]]] = {
    "inside quotes": lambda tokens: _scan(tokens, _quote_step),
    "inside brackets": lambda tokens: [float(depth > 0) for depth in _scan(tokens, _bracket_step)],
    "position in line": lambda tokens: _scan(tokens, lambda column, c: 0.0 if c == "\n" else column + 1),
    "inside a word": lambda tokens: [float(bool(token) and token[-1].isalnum()) for token in tokens],
    "after a newline": lambda tokens: [float(token.endswith("\n")) for token in tokens],
}


def text_properties(tokens: Sequence[str]) -> dict[str, torch.Tensor]:
    """Each property's value at every position, as a float tensor."""
    return {name: torch.tensor(compute(tokens), dtype=torch.float64) for name, compute in PROPERTIES.items()}


def correlations(states: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each column of `states` `(length, units)` with `values` `(length,)`; 0 where either
    does not vary (a constant unit or a property the text never changes)."""
    centred_states = states.double() - states.double().mean(0)
    centred_values = values.double() - values.double().mean()
    spread = centred_states.norm(dim=0) * centred_values.norm()
    covariance = centred_values @ centred_states
    return torch.where(spread > 0, covariance / spread.clamp_min(1e-300), torch.zeros_like(covariance))


def rank_units(acts: TextActivations, top: int = 8) -> dict[str, list[UnitCorrelation]]:
    """For every property the text makes vary (at `MIN_MINORITY` positions or more, in a text of `MIN_POSITIONS`
    tokens or more), the `top` units whose activation correlates most strongly with it (either sign), across all
    layers and state kinds, strongest first. A text too short or too uniform gets `{}`."""
    if len(acts.tokens) < MIN_POSITIONS:
        return {}
    blocks = [(layer, kind, states) for kind in STATE_KINDS if kind == "hidden" or acts.cell is not None
              for layer, states in enumerate(acts.states(kind))]
    ranked = {}
    for name, values in text_properties(acts.tokens).items():
        if len(values) - values.unique(return_counts=True)[1].max() < MIN_MINORITY:
            continue
        found = [UnitCorrelation(layer, kind, unit, float(r)) for layer, kind, states in blocks
                 for unit, r in enumerate(correlations(states, values))]
        ranked[name] = sorted(found, key=lambda u: abs(u.correlation), reverse=True)[:top]
    return ranked


__all__ = ["MIN_MINORITY", "MIN_POSITIONS", "PROPERTIES", "UnitCorrelation", "correlations", "rank_units",
           "text_properties"]
