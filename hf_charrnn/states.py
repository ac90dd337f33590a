"""
Primed states: read a prompt once, then continue from the state it left, many times or on another day.

An RNN's whole memory of a prompt is its state, a few kilobytes however long the prompt was. `prime` reads the
prompt's tokens but the last (the state generate() expects with a handed-in cache: it feeds the tokens the cache has
not consumed, here the last one, and samples from its logits); `continue_from` samples continuations from a copy of
that state, so one prime serves any number of calls, and `num_return_sequences` copies it per continuation instead of
reading the prompt once per sample. `save_state`/`load_state` keep it in a safetensors file with the prompt's last
token and a fingerprint of the model (configuration and weights): a state is meaningful only for the model that made
it, so loading one into any other model is refused. Continuing from a loaded state gives exactly the tokens one long
`generate()` call over the prompt gives (same options and seed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .modeling_charrnn import CharRNNCache

STATE_FORMAT = "hf_charrnn.primed_state.v1"
# Configuration entries that do not change what a state means (where and how the model was saved or loaded).
VOLATILE_CONFIG_KEYS = ("transformers_version", "_name_or_path", "architectures", "auto_map", "dtype", "torch_dtype",
                        "use_cache", "_attn_implementation_autoset", "output_hidden_states")


class StateMismatchError(ValueError):
    """A saved state made by another model (or damaged): continuing from it would be meaningless."""


@dataclass
class PrimedState:
    """Token ids of the prompt, `(1, length)`, and the state after all of them but the last (the cache counts the ones
    it read; a loaded state keeps only the last token, the others are in its state)."""

    prompt_ids: torch.LongTensor
    cache: CharRNNCache

    def copy(self) -> "PrimedState":
        """A copy to continue from: generate() updates the cache it is given."""
        tensors = [tensor.clone() for tensor in self.cache.tensors]
        return PrimedState(self.prompt_ids.clone(), CharRNNCache(*tensors, seen_tokens=self.cache.seen_tokens))


def model_fingerprint(model) -> str:
    """SHA-256 of the model's configuration (what defines it, not where it was saved) and its weights."""
    config = {key: value for key, value in model.config.to_dict().items() if key not in VOLATILE_CONFIG_KEYS}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def prime(model, prompt_ids: torch.LongTensor, after: PrimedState | None = None) -> PrimedState:
    """Read `prompt_ids` (one prompt, `(1, length)`) but its last token, once; `after` a primed state, the prompt
    continues that state's prompt (its last token is read now)."""
    if prompt_ids.dim() != 2 or prompt_ids.shape[0] != 1 or (after is None and prompt_ids.shape[1] < 1):
        raise ValueError(f"prime() takes one prompt of at least one token, shape (1, length); got "
                         f"{tuple(prompt_ids.shape)}.")
    parameter = next(model.parameters())
    prompt_ids = prompt_ids.to(parameter.device)
    if after is not None:
        after = after.copy()
        prompt_ids, cache = torch.cat([after.prompt_ids.to(parameter.device), prompt_ids], dim=1), after.cache
        cache.set_tensors(tuple(tensor.to(parameter.device) for tensor in cache.tensors))
    else:
        cache = CharRNNCache.zeros(model.config, 1, device=parameter.device, dtype=parameter.dtype)
    unread = prompt_ids[:, cache.seen_tokens : -1]
    if unread.shape[1] > 0:
        cache = model(input_ids=unread, cache=cache, use_cache=True, logits_to_keep=1).cache
    return PrimedState(prompt_ids, cache)


def continue_from(model, state: PrimedState, **generate_options):
    """`model.generate()` from (a copy of) `state`: the prompt's ids, then the new tokens. `num_return_sequences`
    copies the state per continuation; the prompt is not read again."""
    state = state.copy()
    ids = state.prompt_ids
    return model.generate(ids, attention_mask=torch.ones_like(ids), cache=state.cache, **generate_options)


def save_state(path: str | Path, model, state: PrimedState) -> None:
    """The state, the prompt's last token (not read yet) and the model's fingerprint in one safetensors file: a few KB
    however long the prompt was. Loaded, it continues from that token, as the whole prompt would."""
    tensors = {f"state.{index}": tensor.detach().cpu().contiguous() for index, tensor in enumerate(state.cache.tensors)}
    tensors["prompt_ids"] = state.prompt_ids[:, -1:].detach().cpu().contiguous()
    metadata = {"format": STATE_FORMAT, "model_fingerprint": model_fingerprint(model),
                "prompt_tokens": str(state.prompt_ids.shape[1]), "cell_type": model.config.cell_type}
    save_file(tensors, str(path), metadata=metadata)


def load_state(path: str | Path, model) -> PrimedState:
    """A state saved by `save_state` for this very model; `StateMismatchError` for another model's or a damaged one."""
    try:
        tensors = load_file(str(path), device=str(next(model.parameters()).device))
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
    except (SafetensorError, ValueError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise StateMismatchError(f"{path} is not a state saved by hf-charrnn ({error}).") from None
    if metadata.get("format") != STATE_FORMAT:
        raise StateMismatchError(f"{path} is not a state saved by hf-charrnn (format {metadata.get('format')!r}).")
    if metadata.get("model_fingerprint") != model_fingerprint(model):
        raise StateMismatchError(
            f"{path} holds the state of another model (or of this one before it was trained further): a state only "
            "means something to the model that made it. Prime it again with this model (--prompt ... --save_state)."
        )
    dtype = next(model.parameters()).dtype  # a state saved from the model in another precision: this one's
    states = [tensors[f"state.{index}"].to(dtype) for index in range(2 if "state.1" in tensors else 1)]
    return PrimedState(tensors["prompt_ids"].long(), CharRNNCache(*states))  # the last token, not consumed yet


__all__ = ["PrimedState", "StateMismatchError", "prime", "continue_from", "save_state", "load_state",
           "model_fingerprint"]
