"""The self-contained HTML page of `hf-charrnn explain`: the page's script and style (`page.html`, `page.js`,
`page.css` beside this file) with the numbers of one text inlined, so the file opens anywhere, offline, with no
request for anything.

What the page receives, per position: the token's text, its surprisal, the top next tokens with their
probabilities; per layer and state kind, every unit's activation, quantised to 8 bits against the unit's largest
magnitude (colours have far fewer steps) and gzip-compressed (the browser's DecompressionStream unpacks a layer when
it is first shown). 20,000 characters of a 2x512 LSTM come to about 41 MB untrained, less once trained (its
states compress better).

Colours: a unit's activation `a` is drawn as `t = a / scale` in [-1, 1], from white to blue (positive) or red
(negative), where `scale` is 1 for a state bounded by its nonlinearity (the hidden state of an LSTM, a GRU or a tanh
RNN) and the unit's largest magnitude in this text otherwise (cell states, ReLU RNNs). Surprisal is drawn from white
(0 bits) to orange (`SURPRISAL_SCALE_BITS` and more). `unit_colour` and `surprisal_colour` are the page's own
formulas, for tests and for anyone drawing the same colours elsewhere.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import math
import re
from importlib import resources
from pathlib import Path

import torch

from .activations import STATE_KINDS, TextActivations
from .units import rank_units

TOP_NEXT_TOKENS = 5
SURPRISAL_SCALE_BITS = 8.0  # surprisal drawn at full strength from here (1 in 256)
POSITIVE_RGB, NEGATIVE_RGB, SURPRISAL_RGB = (33, 102, 172), (178, 24, 43), (230, 85, 13)
QUANTISATION_LEVELS = 127  # int8, symmetric
BOUNDED_HIDDEN = {"lstm", "gru", "rnn_tanh"}  # cell types whose hidden state lies in [-1, 1]
GENERATOR_TAG = '<meta name="generator" content="hf-charrnn explain">'
HEAD_BYTES = 2048  # where a page's head, with the tags above, ends


def _mix(target: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    """White moved `amount` (0..1) of the way to `target`, rounded as JavaScript's Math.round does."""
    return tuple(math.floor(255 + (channel - 255) * amount + 0.5) for channel in target)


def unit_colour(t: float) -> tuple[int, int, int]:
    """The page's colour for a scaled activation `t` (clamped to [-1, 1])."""
    t = max(-1.0, min(1.0, t))
    return _mix(POSITIVE_RGB, t) if t >= 0 else _mix(NEGATIVE_RGB, -t)


def surprisal_colour(bits: float) -> tuple[int, int, int]:
    """The page's colour for a token's surprisal in bits."""
    return _mix(SURPRISAL_RGB, min(bits / SURPRISAL_SCALE_BITS, 1.0))


def _largest_magnitudes(states: torch.Tensor) -> torch.Tensor:
    """Per unit, its largest absolute value in this text (never 0: values are divided by it)."""
    return states.abs().amax(0).clamp_min(1e-12)


def display_scale(cell_type: str, kind: str, states: torch.Tensor) -> torch.Tensor:
    """Per unit, the activation drawn at full colour (see the module docstring)."""
    if kind == "hidden" and cell_type in BOUNDED_HIDDEN:
        return torch.ones(states.shape[1])
    return _largest_magnitudes(states)


def _packed_states(cell_type: str, layer: int, kind: str, states: torch.Tensor) -> dict:
    """One layer's states of one kind: int8 per unit and position (unit-major, so a unit is one slice), gzipped."""
    largest = _largest_magnitudes(states)
    quantised = torch.round(states / largest * QUANTISATION_LEVELS).to(torch.int8).T.contiguous()
    packed = gzip.compress(quantised.numpy().tobytes(), compresslevel=6, mtime=0)
    return {"layer": layer, "kind": kind, "units": states.shape[1],
            "largest": [float(f"{value:.6g}") for value in largest.tolist()],
            "display": [float(f"{value:.6g}") for value in display_scale(cell_type, kind, states).tolist()],
            "data": base64.b64encode(packed).decode("ascii")}


def _vocabulary(tokenizer, size: int) -> list[str]:
    """Each output id's text; ids the tokenizer does not know (a model built with a larger vocabulary) by number."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    return [token if token is not None else f"<id {i}>" for i, token in enumerate(tokens)]


def estimated_page_megabytes(config, characters: int) -> float:
    """An upper bound on a page's size: a byte per unit, state kind and character, in base64, before compression."""
    kinds = 2 if config.cell_type == "lstm" else 1
    return characters * config.num_layers * config.hidden_size * kinds * 4 / 3 / 2**20


def report_data(acts: TextActivations, tokenizer, model_name: str, config) -> dict:
    """Everything the page shows, as JSON-ready values."""
    probabilities = torch.softmax(acts.next_logits, dim=-1)
    top = probabilities.topk(min(TOP_NEXT_TOKENS, probabilities.shape[1]), dim=-1)
    kinds = [kind for kind in STATE_KINDS if kind == "hidden" or acts.cell is not None]
    return {
        "model": {"name": model_name, "cell_type": config.cell_type, "num_layers": config.num_layers,
                  "hidden_size": config.hidden_size},
        "bits_per_character": acts.bits_per_character(),
        "tokens": acts.tokens,
        "vocabulary": _vocabulary(tokenizer, acts.next_logits.shape[1]),
        "top_k": top.indices.shape[1],
        "top_ids": top.indices.flatten().tolist(),
        "top_probabilities": [round(p, 5) for p in top.values.flatten().tolist()],
        "surprisal": [round(bits, 4) for bits in acts.surprisal.tolist()],
        "surprisal_scale": SURPRISAL_SCALE_BITS,
        "colours": {"positive": POSITIVE_RGB, "negative": NEGATIVE_RGB, "surprisal": SURPRISAL_RGB},
        "states": [_packed_states(config.cell_type, layer, kind, states) for kind in kinds
                   for layer, states in enumerate(acts.states(kind))],
        "ranked_units": {name: [{"layer": u.layer, "kind": u.kind, "unit": u.unit,
                                 "correlation": round(u.correlation, 4)} for u in units]
                         for name, units in rank_units(acts).items()},
    }


def is_explain_report(path: str | Path) -> bool:
    """Whether the file at `path` is a page this module wrote (its head names the generator)."""
    with open(path, "rb") as file:
        return GENERATOR_TAG.encode() in file.read(HEAD_BYTES)


def report_model_fingerprint(path: str | Path) -> str | None:
    """The fingerprint of the model a page was made with, from its head (None if it has none)."""
    with open(path, "rb") as file:
        found = re.search(rb'<meta name="hf-charrnn-model" content="([0-9a-f]*)">', file.read(HEAD_BYTES))
    return found[1].decode() if found and found[1] else None


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def render_report(acts: TextActivations, tokenizer, model_name: str, config, model_fingerprint: str = "") -> str:
    """The whole page as one HTML string; `model_fingerprint` (`hf_charrnn.states.model_fingerprint`) goes in its
    head, so that `hf-charrnn push` can tell whether a page was made with the model it pushes."""
    data = json.dumps(report_data(acts, tokenizer, model_name, config), ensure_ascii=False, separators=(",", ":"))
    data = data.replace("<", "\\u003c")  # nothing in the data can close the script element that holds it
    parts = {"TITLE": html.escape(f"Inside {model_name}"), "STYLE": _asset("page.css"), "SCRIPT": _asset("page.js"),
             "DATA": data, "FINGERPRINT": html.escape(model_fingerprint)}
    return re.sub(r"\{\{(TITLE|STYLE|SCRIPT|DATA|FINGERPRINT)\}\}", lambda match: parts[match[1]],
                  _asset("page.html"))


__all__ = ["GENERATOR_TAG", "SURPRISAL_SCALE_BITS", "TOP_NEXT_TOKENS", "display_scale", "estimated_page_megabytes",
           "is_explain_report", "render_report", "report_data", "report_model_fingerprint", "surprisal_colour",
           "unit_colour"]
