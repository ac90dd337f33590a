"""See inside a model: per-position activations (`activations`), the units that track simple properties of a text
(`units`), and the self-contained HTML page of `hf-charrnn explain` (`report`)."""

from .activations import STATE_KINDS, TextActivations, activations, lstm_cell_states

__all__ = ["STATE_KINDS", "TextActivations", "activations", "lstm_cell_states"]
