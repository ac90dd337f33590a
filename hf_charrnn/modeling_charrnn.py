"""PyTorch CharRNN: classic recurrent language models (LSTM, GRU, tanh/ReLU RNN) for transformers.

The whole model is an input encoding (embedding or one-hot), a stack of `nn.LSTM` / `nn.GRU` / `nn.RNN` layers and a
linear output layer. What makes it a transformers citizen is the recurrent state: it travels between calls in a
[`CharRNNCache`] passed as `cache`, so `generate()` feeds one token per step (O(1) work per token), beam search
reorders it, and a returned cache continues where it stopped.

transformers 5.24 renamed the state from `past_key_values` to `cache`. This file serves every release from 5.23 on:
forward() takes `cache` and still accepts `past_key_values` (deprecated from 5.24 on, as in transformers); the output
dataclasses name their state field as the installed release expects, and `outputs.cache` reads it on every release.

Execution paths that give the same numbers: whole sequences without padding run through the fused cuDNN/oneDNN
kernels; with padding, pad steps are skipped exactly (valid tokens packed; a pad position repeats the last valid
output); a single-token decoding step is one matrix product per layer over [input, state] without gradients (the
first layer's over the state alone, its input term looked up per token id; the cell kernels with gradients), several
times faster than a one-step `nn.LSTM` call; `output_hidden_states=True` runs the stack one layer at a time. Without
gradients, long inputs go in chunks (bounded memory for any prompt); under torch.export / torch.compile the
data-dependent checks step aside. This file only imports `.configuration_charrnn`, so it runs as remote code next to
a checkpoint (`trust_remote_code=True`) where hf_charrnn is not installed.
"""

import functools
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.generation.configuration_utils import GenerationMode
from transformers.generation.utils import ALL_CACHE_NAMES
from transformers.utils import ModelOutput, can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_charrnn import SPECIAL_TOKEN_ID_NAMES, CharRNNConfig

_RNN_MODULES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn_tanh": nn.RNN, "rnn_relu": nn.RNN}
_CELL_FUNCTIONS = {"lstm": torch.lstm_cell, "gru": torch.gru_cell, "rnn_tanh": torch.rnn_tanh_cell,
                   "rnn_relu": torch.rnn_relu_cell}
# The same recurrences over a whole sequence (dense or packed), called one layer at a time for per-layer outputs.
_SEQUENCE_FUNCTIONS = {"lstm": torch.lstm, "gru": torch.gru, "rnn_tanh": torch.rnn_tanh, "rnn_relu": torch.rnn_relu}
ASSISTED_DECODING_MESSAGE = (
    "{name} does not support assisted or prompt-lookup decoding (assistant_model=, prompt_lookup_num_tokens=, "
    "assistant_early_exit=): they verify several draft tokens at once and rewind to the last accepted one, and "
    "rewinding a recurrent state means keeping or recomputing the state at every drafted position, which costs a "
    "char-RNN about as much as the steps it saves. Decode without them: greedy (do_sample=False), sampling, or beam "
    "search."
)
NO_ATTENTION_MESSAGE = ("output_attentions=True: a CharRNN is a recurrent model and has no attention weights to "
                        "return. Ask for output_hidden_states=True to get every layer's outputs.")

# Without gradients, inputs are consumed this many tokens at a time: memory then stays bounded for any prompt length,
# while each chunk is still long enough for the fused sequence kernels to run at full speed.
INFERENCE_CHUNK_LENGTH = 4096

# True from transformers 5.24 on, where generate() and every output call the model state `cache`.
STATE_IS_CALLED_CACHE = "cache" in ALL_CACHE_NAMES


class CharRNNCache:
    """The recurrent state of every layer, carried between forward calls (as `cache`): `hidden` (and, for LSTMs,
    `cell`), `(num_layers, batch_size, hidden_size)` as `nn.LSTM` lays it out. Updated in place, like transformers'
    caches; it counts the tokens consumed so a handed-back cache skips them in generate()."""

    is_compileable = False  # keeps generate() from building 4D attention masks or compiling the forward
    is_croppable = False  # a recurrent state cannot be rewound (generate() asks before deferring its stop check)

    def __init__(self, hidden: torch.Tensor, cell: torch.Tensor | None = None, seen_tokens: int = 0):
        self.hidden, self.cell, self.seen_tokens = hidden, cell, seen_tokens

    @classmethod
    def zeros(cls, config: CharRNNConfig, batch_size: int, device=None, dtype=None) -> "CharRNNCache":
        """The all-zero state every sequence starts from."""
        shape = (config.num_layers, batch_size, config.hidden_size)
        zeros = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(2 if config.cell_type == "lstm" else 1)]
        return cls(*zeros)

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        """`(hidden, cell)` for LSTMs, `(hidden,)` otherwise."""
        return (self.hidden,) if self.cell is None else (self.hidden, self.cell)

    def set_tensors(self, tensors: tuple[torch.Tensor, ...]) -> None:
        self.hidden, self.cell = tensors[0], (tensors[1] if len(tensors) > 1 else None)

    @property
    def batch_size(self) -> int:
        return self.hidden.shape[1]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Number of tokens consumed so far (pad positions included), as generate() expects."""
        return self.seen_tokens

    @property
    def is_linear(self) -> list[bool]:
        """One flag per layer, as transformers' caches have (5.24+): generate() cuts the tokens a continued cache has
        consumed off the prompt only when some layer is not linear-attention, and this cache needs that cut."""
        return [False] * self.hidden.shape[0]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Keep the states of the beams that beam search selected (called by generate() every step)."""
        self.set_tensors(tuple(t.index_select(1, beam_idx.to(t.device)) for t in self.tensors))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.reorder_cache(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Repeat each sequence's state `repeats` times (for several return sequences from one cached prompt)."""
        self.set_tensors(tuple(t.repeat_interleave(repeats, dim=1) for t in self.tensors))

    def detach(self) -> "CharRNNCache":
        """Cut the autograd history in place (truncated backpropagation through time) and return the cache."""
        self.set_tensors(tuple(t.detach() for t in self.tensors))
        return self

    def __repr__(self) -> str:
        kind = "LSTM" if self.cell is not None else "RNN"
        return f"CharRNNCache({kind}, shape={tuple(self.hidden.shape)}, seen_tokens={self.seen_tokens})"


@dataclass
class CharRNNModelOutput(ModelOutput):
    """
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`):
        Output of the last recurrent layer (only the last `hidden_states_to_keep` positions when that is set).
    cache (`CharRNNCache`, *optional*, returned when `use_cache=True`):
        The recurrent state after the last input token. Before transformers 5.24 the field is `past_key_values`;
        `.cache` reads it on every release.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
        `num_layers + 1` tensors of shape `(batch_size, sequence_length, width)`: the input encoding (embedding or
        one-hot vectors), then each recurrent layer's outputs; the last one is `last_hidden_state`, untrimmed.
    """

    last_hidden_state: torch.FloatTensor | None = None
    if STATE_IS_CALLED_CACHE:
        cache: CharRNNCache | None = None
    else:  # generate() before 5.24 looks for the state under this name
        past_key_values: CharRNNCache | None = None
        cache = property(lambda self: self.past_key_values)
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class CharRNNCausalLMOutput(ModelOutput):
    """
    loss (`torch.FloatTensor` of shape `(1,)`, *optional*, returned when `labels` is provided):
        Next-token cross-entropy, in nats per token.
    logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, vocab_size)`):
        Scores for the next token at each kept position.
    cache, hidden_states:
        As in [`CharRNNModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    if STATE_IS_CALLED_CACHE:
        cache: CharRNNCache | None = None
    else:  # generate() before 5.24 looks for the state under this name
        past_key_values: CharRNNCache | None = None
        cache = property(lambda self: self.past_key_values)
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


def _accepts_past_key_values(forward):
    """Let forward() take the state under its pre-5.24 name, `past_key_values`, as well as `cache`: silently before
    5.24 (generate() itself passes it), with transformers' own deprecation warning from 5.24 on."""
    if STATE_IS_CALLED_CACHE:
        return deprecate_kwarg("past_key_values", "6.0.0", new_name="cache", raise_if_both_names=True)(forward)

    @functools.wraps(forward)
    def forward_taking_either_name(self, *args, past_key_values=None, **kwargs):
        if past_key_values is not None:
            if kwargs.get("cache") is not None:
                raise ValueError("Pass the state as `cache` or as `past_key_values`, not both.")
            kwargs["cache"] = past_key_values
        return forward(self, *args, **kwargs)

    return forward_taking_either_name


class CharRNNPreTrainedModel(PreTrainedModel):
    config_class = CharRNNConfig
    config: CharRNNConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["CharRNNModel"]
    _input_embed_layer = "embeddings"  # transformers' get/set_input_embeddings find it (on `model` for the LM)

    @torch.no_grad()
    def _init_weights(self, module):
        """char-rnn's scheme: every weight uniform in +-initializer_range; an LSTM's forget gates start open (bias 1)."""
        bound = self.config.initializer_range
        if isinstance(module, nn.RNNBase):
            for name, param in module.named_parameters():
                init.zeros_(param) if name.startswith("bias") else init.uniform_(param, -bound, bound)
            for layer in range(module.num_layers if module.mode == "LSTM" else 0):
                bias = getattr(module, f"bias_ih_l{layer}")  # a slice loses init's "already loaded" flag: check here
                if not getattr(bias, "_is_hf_initialized", False):  # gate order: input, forget, cell, output
                    init.ones_(bias[module.hidden_size : 2 * module.hidden_size])
        elif isinstance(module, (nn.Linear, nn.Embedding)):
            init.uniform_(module.weight, -bound, bound)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                *args, **kwargs):
        """transformers' resize for a learned embedding. A one-hot input has no table to resize, and a vocabulary that
        would lose a special token the config names (its id >= the new size) is refused before anything changes:
        transformers only warns there, and the saved config would then not load."""
        if self.config.input_encoding == "one_hot":
            raise ValueError("resize_token_embeddings: with input_encoding='one_hot' the input width is the vocabulary "
                             "size, so new tokens would change the first recurrent layer's weights, not an embedding "
                             "table. Train with input_encoding='embedding' to add tokens later, or a new model.")
        if new_num_tokens is not None:
            size = new_num_tokens
            if pad_to_multiple_of:  # transformers rounds the size up to a multiple
                size = -(-size // pad_to_multiple_of) * pad_to_multiple_of
            lost = {name: value for name in SPECIAL_TOKEN_ID_NAMES
                    if (value := getattr(self.config, name, None)) is not None and value >= size}
            if lost:
                named = ", ".join(f"{name}={value}" for name, value in lost.items())
                raise ValueError(
                    f"resize_token_embeddings({new_num_tokens}): the new vocabulary of {size} tokens would drop the "
                    f"special tokens the config names ({named}). Keep at least {max(lost.values()) + 1} tokens, or "
                    "give those tokens ids below the new size (or None) in model.config and the tokenizer first.")
        return super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, *args, **kwargs)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # generate() would otherwise inject a DynamicCache (key/value cache) that a recurrent model cannot use.
        return False

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as usual; a checkpoint marked for remote code then serves AutoModel and AutoModelForCausalLM alike."""
        if self._auto_class is not None:
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.setdefault("AutoModel", "modeling_charrnn.CharRNNModel")
            auto_map.setdefault("AutoModelForCausalLM", "modeling_charrnn.CharRNNForCausalLM")
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Load safetensors weights only, and explain a damaged weights file instead of failing inside safetensors.
        Hub kernels stay off unless asked for (`use_kernels=True`): none replaces a CharRNN layer, and from 5.25 on
        transformers turns them on by default and re-applies them at every train()/eval() switch."""
        kwargs.setdefault("use_safetensors", True)
        kwargs.setdefault("use_kernels", False)
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except SafetensorError as error:
            raise OSError(f"The weights file of {pretrained_model_name_or_path!s} is corrupt or truncated ({error}). "
                          "Save the model again with save_pretrained(), or download the checkpoint again.") from error


class OneHotEncoding(nn.Module):
    """The classic tutorials' input encoding, token id -> one-hot vector, as the model's input-embedding module: fixed
    (nothing to train or save); `weight`, the identity matrix it stands for, is built only when read."""

    def __init__(self, num_embeddings: int):
        super().__init__()
        self.num_embeddings = self.embedding_dim = num_embeddings
        # Holds no values: it follows the model's dtype and device through .to(), so the vectors match the weights.
        self.register_buffer("dtype_anchor", torch.empty(0), persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        return torch.eye(self.num_embeddings, dtype=self.dtype_anchor.dtype, device=self.dtype_anchor.device)

    def forward(self, input_ids: torch.LongTensor) -> torch.Tensor:
        return F.one_hot(input_ids, self.num_embeddings).to(self.dtype_anchor.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}"


class CharRNNModel(CharRNNPreTrainedModel):
    """Input encoding followed by the stack of recurrent layers; returns the last layer's outputs and the state."""

    def __init__(self, config: CharRNNConfig):
        super().__init__(config)
        config.validate_charrnn_fields()  # a config changed after it was built gets the same messages
        one_hot = config.input_encoding == "one_hot"
        self.embeddings = OneHotEncoding(config.vocab_size) if one_hot else nn.Embedding(config.vocab_size,
                                                                                         config.embedding_dim)
        self.rnn = self._build_rnn(config)
        self.dropout = nn.Dropout(config.dropout)
        self.post_init()

    @staticmethod
    def _build_rnn(config: CharRNNConfig) -> nn.RNNBase:
        options = dict(input_size=config.input_size, hidden_size=config.hidden_size, num_layers=config.num_layers,
                       dropout=config.dropout if config.num_layers > 1 else 0.0, batch_first=True)
        if config.cell_type.startswith("rnn_"):
            options["nonlinearity"] = config.cell_type.removeprefix("rnn_")
        return _RNN_MODULES[config.cell_type](**options)

    @can_return_tuple
    @_accepts_past_key_values
    def forward(
        self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
        cache: CharRNNCache | None = None, inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None, hidden_states_to_keep: int = 0, output_hidden_states: bool | None = None,
        output_attentions: bool | None = None, **kwargs,
    ) -> CharRNNModelOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
            Token ids. With a `cache`, only the tokens the cache has not consumed yet.
        attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)` or `(batch_size, past + sequence_length)`):
            1 for real tokens, 0 for padding. Pad steps are skipped exactly: they change neither the state nor the
            output (a pad position repeats the last real output). Left or right padding both work.
        cache (`CharRNNCache`, *optional*):
            State to start from; zeros when absent. Updated in place when `use_cache=True`. `past_key_values` is the
            same argument under its pre-5.24 name (deprecated from transformers 5.24 on).
        inputs_embeds (`torch.FloatTensor` of shape `(batch_size, sequence_length, input_size)`, *optional*):
            Input vectors to use instead of encoding `input_ids`.
        use_cache (`bool`, *optional*):
            Return the state. Defaults to `config.use_cache` in eval mode and `False` in training mode.
        hidden_states_to_keep (`int`, *optional*, defaults to 0):
            Keep only the last this-many output positions (0 keeps all); lets long prompts run in bounded memory.
        output_hidden_states (`bool`, *optional*):
            Also return every layer's outputs (`hidden_states`); defaults to `config.output_hidden_states`. The
            stack then runs one layer at a time, so leave it off when only the last layer is needed.
        output_attentions (`bool`, *optional*):
            A recurrent model has no attention: `True` raises a ValueError that says so.
        """
        if output_attentions:
            raise ValueError(NO_ATTENTION_MESSAGE)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        per_layer = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        inputs = input_ids if input_ids is not None else inputs_embeds
        self._check_inputs(input_ids, inputs_embeds, continuing=cache is not None)
        batch_size, length = inputs.shape[:2]
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        cache = self._prepare_cache(cache, batch_size, inputs.device)
        mask = _current_step_mask(attention_mask, batch_size, length, inputs.device)

        last, hidden_states, state = self._run(input_ids, inputs_embeds, cache.tensors, mask, per_layer,
                                               hidden_states_to_keep)
        if use_cache:
            cache.set_tensors(state)
            cache.seen_tokens += length
        # Positional: the state field is called `cache` or `past_key_values` depending on the release.
        return CharRNNModelOutput(last, cache if use_cache else None, hidden_states)

    def _run(self, input_ids, inputs_embeds, state, mask, per_layer: bool, keep: int):
        """Encode and recur, in windows of INFERENCE_CHUNK_LENGTH tokens without gradients (bounded memory). Returns the
        last layer's outputs (the last `keep` positions, if set), every layer's outputs (`per_layer`), the state."""
        length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        whole = torch.is_grad_enabled() or _is_tracing()  # a traced length is symbolic: one window, no Python loop
        windows = [slice(None)] if whole else [slice(at, at + INFERENCE_CHUNK_LENGTH)
                                               for at in range(0, length, INFERENCE_CHUNK_LENGTH)]
        kept, every_layer = [], []
        for window in windows:
            vectors = self._encode(input_ids[:, window]) if input_ids is not None else inputs_embeds[:, window]
            outputs, state = self._recur(vectors, state, None if mask is None else mask[:, window], per_layer)
            if per_layer:
                every_layer.append((vectors, *outputs))
            else:
                kept = _keep_last_positions(kept + outputs, keep)
        if not per_layer:
            last = kept[0] if len(kept) == 1 else torch.cat(kept, dim=1)
            return self._drop(last, self.dropout.p), None, state
        hidden_states = [parts[0] if len(parts) == 1 else torch.cat(parts, dim=1) for parts in zip(*every_layer)]
        # the last layer's outputs, with the dropout last_hidden_state has
        hidden_states[-1] = self._drop(hidden_states[-1], self.dropout.p)
        return (hidden_states[-1][:, -keep:] if keep else hidden_states[-1]), tuple(hidden_states), state

    def _encode(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """The input vectors; in training with `embedding_dropout`, each token of the vocabulary dropped for the whole
        batch with that probability (its every occurrence reads zeros), the others scaled up to keep the mean."""
        vectors = self.embeddings(input_ids)
        p = self.config.embedding_dropout
        if not (self.training and p):
            return vectors
        kept = vectors.new_empty(self.config.vocab_size).bernoulli_(1 - p) / (1 - p)
        return vectors * kept[input_ids].unsqueeze(-1)

    def _drop(self, outputs: torch.Tensor, p: float) -> torch.Tensor:
        """Dropout with probability `p` on `(batch, time, features)` outputs in training: a new mask at every step, or
        with `variational_dropout` one mask per sequence and feature, kept over all its steps (locked dropout)."""
        if not (self.training and p):
            return outputs
        if not self.config.variational_dropout:
            return F.dropout(outputs, p, True)
        return outputs * (outputs.new_empty(outputs.shape[0], 1, outputs.shape[2]).bernoulli_(1 - p) / (1 - p))

    def _runs_layer_by_layer(self) -> bool:
        """Training with a regularizer the multi-layer call cannot apply (weight drop, locked masks between layers)."""
        config = self.config
        return self.training and bool(config.weight_dropout or (config.variational_dropout and self.rnn.dropout))

    def _layer_weights(self) -> list[list[torch.Tensor]]:
        """Each layer's `[w_ih, w_hh, b_ih, b_hh]`; in training with `weight_dropout`, `w_hh` with DropConnect: one
        mask per call, the same at every time step, so the recurrence still runs in the fused sequence kernels."""
        p = self.config.weight_dropout
        if not (self.training and p):
            return self.rnn.all_weights
        return [[w_ih, F.dropout(w_hh, p, True), *biases] for w_ih, w_hh, *biases in self.rnn.all_weights]

    def _check_inputs(self, input_ids, inputs_embeds, continuing: bool = False) -> None:
        """Turn the mistakes users make into errors that say what to change. One token `continuing` a cache is a
        generated one (its id came from this model): only prompts get the id check, which costs a host sync."""
        inputs, name = (input_ids, "input_ids") if input_ids is not None else (inputs_embeds, "inputs_embeds")
        if inputs.dim() != (2 if input_ids is not None else 3):
            width = "" if input_ids is not None else f", {self.config.input_size}"
            raise ValueError(f"Expected {name} of shape (batch_size, sequence_length{width}), got shape "
                             f"{tuple(inputs.shape)}.")
        if inputs.shape[1] == 0:
            raise ValueError(
                "The input is empty: the prompt encoded to no tokens. A recurrent model needs at least one token to "
                "start from; pass a non-empty prompt (for unconditional text, the tokenizer's eos_token: documents start "
                "after it in training)."
            )
        if input_ids is None or not input_ids.numel() or _is_tracing() or (continuing and input_ids.shape[1] == 1):
            return
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= self.config.vocab_size:
            raise ValueError(
                f"input_ids contains token id {high if high >= self.config.vocab_size else low}, outside this model's "
                f"vocabulary [0, {self.config.vocab_size}). The tokenizer does not match the model: use the tokenizer "
                "saved with this model."
            )

    def _prepare_cache(self, cache, batch_size: int, device) -> CharRNNCache:
        """Start from zeros, or from the given state, repeated when generate() asks for several sequences per prompt."""
        if cache is None:
            return CharRNNCache.zeros(self.config, batch_size, device=device, dtype=self.rnn.weight_hh_l0.dtype)
        if not isinstance(cache, CharRNNCache):
            raise TypeError(f"cache must be a CharRNNCache returned by this model, not {type(cache).__name__}.")
        if cache.batch_size != batch_size:
            if batch_size % cache.batch_size:
                raise ValueError(f"The cache holds {cache.batch_size} sequences but the input has {batch_size} rows.")
            cache.batch_repeat_interleave(batch_size // cache.batch_size)
        return cache

    def _recur(self, vectors, state, mask, per_layer: bool = False):
        """The recurrent stack over `vectors`, skipping steps where `mask` is False: a list of outputs (every layer's
        when `per_layer`, else the last one's) and the new state."""
        if vectors.shape[1] == 1 and not self.training:
            return self._step(vectors[:, 0], state, None if mask is None else mask[:, 0], per_layer)
        if per_layer or self._runs_layer_by_layer():
            outputs, new_state = self._layer_by_layer(vectors, state, mask)
            return (outputs if per_layer else outputs[-1:]), new_state
        if mask is not None:
            output, new_state = self._recur_masked(vectors, state, mask)
            return [output], new_state
        output, new_state = self.rnn(vectors, self._to_rnn_state(state))
        return [output], self._from_rnn_state(new_state)

    def decode_step(self, input_ids: torch.LongTensor, cache: CharRNNCache) -> torch.Tensor:
        """One new token per row (`input_ids` of shape `(batch_size, 1)`), without gradients: advances `cache` in
        place and returns the last layer's output, `(batch_size, 1, hidden_size)`. forward() computes the same for
        such a call; generate() reaches this through the LM, which skips forward()'s argument handling and output
        dataclass, as costly per token as the step's own products for a small model."""
        outputs, state = self._step(input_ids[:, 0], cache.tensors, None)
        cache.set_tensors(state)
        cache.seen_tokens += 1
        return outputs[0]

    def _step(self, inputs, state, keep_row, per_layer: bool = False):
        """One token through every layer, far cheaper than a length-1 `nn.LSTM` call: without gradients, one matrix
        product per layer over [input, state] (`_FusedStepWeights`), or over the state alone where `inputs` are token
        ids and the first layer's input terms are tabulated; otherwise the cell kernels. `inputs`: `(batch_size,)`
        token ids or `(batch_size, input_size)` vectors."""
        cell_type = self.config.cell_type
        fused = None if torch.is_grad_enabled() or _is_tracing() else self._fused_step_weights()
        token_ids = not inputs.is_floating_point()
        tabulate = token_ids and fused is not None and _runs_as_built(self.embeddings)
        input_terms = fused.input_terms if tabulate else None
        layer_input = self.embeddings(inputs) if token_ids and input_terms is None else inputs
        new_states = []
        for layer, weights in enumerate(fused.layers if fused is not None else self.rnn.all_weights):
            layer_state = tuple(t[layer] for t in state)
            if fused is None:  # weights: [w_ih, w_hh, b_ih, b_hh]
                layer_state = _cell_kernel_step(cell_type, layer_input, layer_state, weights)
            elif layer == 0 and input_terms is not None:
                gates = torch.addmm(input_terms.index_select(0, inputs), layer_state[0], fused.first_state_weight)
                layer_state = _state_from_gates(cell_type, gates, layer_state)
            else:
                layer_state = _fused_cell_step(cell_type, layer_input, layer_state, *weights)
            new_states.append(layer_state)
            layer_input = layer_state[0]
        new_state = tuple(torch.stack(parts) for parts in zip(*new_states))
        if keep_row is not None:  # a pad step: keep the state of those rows as it was
            new_state = tuple(torch.where(keep_row[None, :, None], new, old) for new, old in zip(new_state, state))
        layers = range(self.config.num_layers) if per_layer else [-1]
        return [new_state[0][layer].unsqueeze(1) for layer in layers], new_state

    def _fused_step_weights(self) -> "_FusedStepWeights | None":
        """The weights of `_fused_cell_step` (`_FusedStepWeights`), rebuilt whenever a weight changes (training,
        loading, .to(): the parameters' identity, storage and version counters tell); None for GRU, whose candidate
        gate needs two products."""
        if self.config.cell_type == "gru":
            return None
        parameters = (*self.rnn._flat_weights, *self.embeddings._parameters.values())  # all_weights, flat: faster
        key = (id(self.embeddings), *((id(p), p.data_ptr(), p._version) for p in parameters))
        if getattr(self, "_fused_key", None) != key:
            self._fused_key, self._fused = key, _FusedStepWeights.prepare(self)
        return self._fused

    def _layer_by_layer(self, vectors, state, mask):
        """The stack one layer at a time (the fused call returns only the last layer's outputs), each layer reading the
        outputs returned for the one before, so every returned tensor is in the graph (gradients reach it)."""
        outputs, states, layer_input = [], [], vectors
        for layer, weights in enumerate(self._layer_weights()):
            layer_state = tuple(t[layer : layer + 1] for t in state)
            if mask is None:
                output, layer_state = self._run_layer(layer, layer_input, layer_state, weights=weights)
            else:
                output, layer_state = self._recur_masked(layer_input, layer_state, mask, layer, weights)
            outputs.append(output)
            states.append(layer_state)
            last = layer == self.config.num_layers - 1  # dropout between layers, as nn.LSTM has it
            layer_input = output if last else self._drop(output, self.rnn.dropout)
        return outputs, tuple(torch.cat(parts) for parts in zip(*states))

    def _run_layer(self, layer: int, inputs, layer_state, batch_sizes=None, weights=None):
        """One layer on the module's kernel (`torch.lstm`, ...) and its own weights (or `weights`): `inputs` is
        `(batch, time, features)`, or packed data with its `batch_sizes` (`layer_state` then in the packed order).
        Returns output and state."""
        packed = batch_sizes is not None
        flags = (True, 1, 0.0, self.training, False) + (() if packed else (True,))  # biases, 1 layer, ..., batch_first
        result = _SEQUENCE_FUNCTIONS[self.config.cell_type](
            inputs, *((batch_sizes,) if packed else ()), self._to_rnn_state(layer_state),
            self.rnn.all_weights[layer] if weights is None else weights, *flags)
        return result[0], tuple(result[1:])

    def _recur_masked(self, vectors, state, mask, layer: int | None = None, weights=None):
        """Exact padding: each row's real tokens moved to the front (order kept), run packed (the whole stack, or only
        `layer`), every output put back at its position; a pad position repeats the last real output before it (or
        the incoming state's), so right padding also gives the right scores at the end."""
        batch_size, length, _ = vectors.shape
        lengths = mask.sum(dim=1)
        front_order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices
        front = vectors.gather(1, front_order.unsqueeze(-1).expand_as(vectors))
        rows = lengths.nonzero().squeeze(1)  # rows with at least one real token in this chunk
        if rows.numel() == 0:  # nothing but padding: state and outputs stay as they were
            return state[0][-1].unsqueeze(1).expand(batch_size, length, -1), state
        packed = pack_padded_sequence(front[rows], lengths[rows].cpu(), batch_first=True, enforce_sorted=False)
        row_state = tuple(t[:, rows] for t in state)
        if layer is None:
            packed_output, row_state = self.rnn(packed, self._to_rnn_state(row_state))
            row_state = self._from_rnn_state(row_state)
        else:  # in the packed order, as nn.LSTM sorts it
            data, row_state = self._run_layer(layer, packed.data, tuple(
                t.index_select(1, packed.sorted_indices) for t in row_state), packed.batch_sizes, weights)
            packed_output = packed._replace(data=data)
            row_state = tuple(t.index_select(1, packed.unsorted_indices) for t in row_state)
        new_state = tuple(old.index_copy(1, rows, new) for old, new in zip(state, row_state))
        row_output, _ = pad_packed_sequence(packed_output, batch_first=True, total_length=length)
        front_output = row_output.new_zeros(batch_size, length, row_output.shape[-1]).index_copy(0, rows, row_output)
        last_real = mask.cumsum(dim=1) - 1  # index, among the front-packed outputs, of the last real token so far
        output = front_output.gather(1, last_real.clamp(min=0).unsqueeze(-1).expand_as(front_output))
        return torch.where((last_real < 0).unsqueeze(-1), state[0][-1].unsqueeze(1), output), new_state

    def _to_rnn_state(self, state):
        return state if self.config.cell_type == "lstm" else state[0]

    def _from_rnn_state(self, rnn_state):
        return tuple(rnn_state) if self.config.cell_type == "lstm" else (rnn_state,)


def _current_step_mask(attention_mask, batch_size: int, length: int, device) -> torch.Tensor | None:
    """The mask columns of the current tokens as booleans, or None when every token is real."""
    if attention_mask is None:
        return None
    if attention_mask.dim() != 2 or attention_mask.shape[0] != batch_size or attention_mask.shape[1] < length:
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, but the input has shape ({batch_size}"
                         f", {length}): it must be (batch_size, sequence_length), or cover the cached tokens too "
                         "(batch_size, past + sequence_length).")
    mask = attention_mask[:, -length:]  # checked as it is (no copy), converted only when some token is padding
    return None if not _is_tracing() and bool(mask.all()) else mask.to(device=device, dtype=torch.bool)


@dataclass
class _FusedStepWeights:
    """What a step without gradients multiplies by, prepared once from the module's weights.

    `layers`: per layer, `([W_ih | W_hh]^T, b_ih + b_hh)` (`_fused_layer_weights`), so a step is one product over
    [x, h]. `input_terms`: the first layer's input term for every token id, `encoding(id) @ W_ih^T + b_ih + b_hh`,
    `(vocab_size, gate_width)`, with `first_state_weight` (`W_hh^T`, in the same gate order): a step from token ids
    then multiplies only the state, and the encoding's and the input weights' products are gone. Tabulated only when
    the table is no larger than the layer's fused weight (the vocabulary no wider than input and state together), as
    it is for character vocabularies; None otherwise."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    input_terms: torch.Tensor | None = None
    first_state_weight: torch.Tensor | None = None

    @classmethod
    def prepare(cls, model: "CharRNNModel") -> "_FusedStepWeights":
        cell_type, config = model.config.cell_type, model.config
        layers = [_fused_layer_weights(cell_type, *weights) for weights in model.rnn.all_weights]
        weight, bias = layers[0]
        plain_encoding = type(model.embeddings) in (nn.Embedding, OneHotEncoding)  # another (a LoRA adapter) is called
        if config.vocab_size > weight.shape[0] or not plain_encoding:
            return cls(layers)
        input_weight, state_weight = weight.split_with_sizes([config.input_size, config.hidden_size])
        encoding = model.embeddings.weight.to(weight.dtype)  # one-hot: the identity
        return cls(layers, torch.addmm(bias, encoding, input_weight), state_weight)


def _fused_layer_weights(cell_type: str, w_ih, w_hh, b_ih, b_hh) -> tuple[torch.Tensor, torch.Tensor]:
    """`([W_ih | W_hh]^T, b_ih + b_hh)`, so a step is one product over [x, h]; an LSTM's gate blocks (input, forget,
    cell, output) reordered to input, forget, output, cell, so that one sigmoid call covers three gates."""
    weight, bias = torch.cat([w_ih, w_hh], dim=1), b_ih + b_hh
    if cell_type == "lstm":
        weight, bias = (torch.cat([blocks[0], blocks[1], blocks[3], blocks[2]]) for blocks in (weight.chunk(4),
                                                                                                bias.chunk(4)))
    return weight.t().contiguous(), bias


def _fused_cell_step(cell_type: str, x, state, weight, bias):
    """One step of an LSTM or tanh/ReLU RNN layer as one matrix product over [x, h], then the gates."""
    return _state_from_gates(cell_type, torch.addmm(bias, torch.cat([x, state[0]], dim=1), weight), state)


def _state_from_gates(cell_type: str, gates, state):
    """A layer's new state from its gate pre-activations (an LSTM's in the order `_fused_layer_weights` gives them)."""
    if cell_type != "lstm":
        return (torch.tanh(gates) if cell_type == "rnn_tanh" else torch.relu(gates),)
    sigmoid_gates, candidate = gates.split_with_sizes([3 * state[0].shape[1], state[0].shape[1]], dim=1)
    in_gate, forget_gate, out_gate = torch.sigmoid(sigmoid_gates).chunk(3, dim=1)
    cell = torch.addcmul(forget_gate * state[1], in_gate, torch.tanh(candidate))
    return out_gate * torch.tanh(cell), cell


def _cell_kernel_step(cell_type: str, x, state, weights):
    """One step of a layer with torch's cell kernel (`weights`: `[w_ih, w_hh, b_ih, b_hh]`), which autograd knows."""
    if cell_type == "lstm":
        return _CELL_FUNCTIONS[cell_type](x, state, *weights)
    return (_CELL_FUNCTIONS[cell_type](x, state[0], *weights),)


def _runs_as_built(module: nn.Module) -> bool:
    """Whether calling `module` runs only its own forward(): no torch hooks, and no accelerate hook (which replaces
    forward). A shortcut that computes a module's output without calling it is only taken when this holds."""
    return not (module._forward_hooks or module._forward_pre_hooks or "forward" in vars(module))


def _is_tracing() -> bool:
    """Whether torch.export / torch.compile is tracing: data-dependent Python branches must stay out of the graph."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


def _keep_last_positions(outputs: list[torch.Tensor], count: int) -> list[torch.Tensor]:
    """Trim a list of (batch, time, hidden) chunks to the last `count` positions (0 keeps them all)."""
    total = sum(chunk.shape[1] for chunk in outputs)
    if not count or total <= count:
        return outputs
    return [torch.cat(outputs, dim=1)[:, -count:]]


class CharRNNForCausalLM(CharRNNPreTrainedModel, GenerationMixin):
    """CharRNN with a next-token output layer: train it with Trainer, sample with generate() or a pipeline."""

    _tied_weights_keys = {"lm_head.weight": "model.embeddings.weight"}

    def __init__(self, config: CharRNNConfig):
        super().__init__(config)
        self.model = CharRNNModel(config)
        tied = config.tie_word_embeddings  # the output layer then reads vectors of the embedding's width
        projected = tied and config.embedding_dim != config.hidden_size
        self.output_projection = nn.Linear(config.hidden_size, config.embedding_dim, bias=False) if projected else None
        self.lm_head = nn.Linear(config.embedding_dim if tied else config.hidden_size, config.vocab_size)
        self.post_init()
        # Sampling is what people do with a char-RNN; these become generation_config.json when saved.
        self.generation_config.update(do_sample=True, temperature=0.8, top_k=0, max_new_tokens=200)

    def prepare_inputs_for_generation(self, input_ids, next_sequence_length=None, cache=None, attention_mask=None,
                                      inputs_embeds=None, is_first_iteration=False, past_key_values=None, **kwargs):
        """generate()'s inputs for one step: the tokens the cache has not consumed (or the prompt's embeddings at
        first) and the state; none of the generic version's attention-model work, which costs more than a step."""
        sliced = slice(-next_sequence_length, None) if next_sequence_length is not None else slice(None)
        embeds = inputs_embeds is not None and is_first_iteration
        inputs = {"input_ids": None, "inputs_embeds": inputs_embeds[:, sliced]} if embeds else {
            "input_ids": input_ids[:, sliced]}
        state = cache if cache is not None else past_key_values  # generate()'s name for it before 5.24
        kwargs = {key: value for key, value in kwargs.items() if key not in ("labels", "position_ids")}
        if not is_first_iteration and state is not None and next_sequence_length == 1:
            attention_mask = None  # the mask of a generated token is 1 (generate() appends ones): nothing to skip
        return {**inputs, "cache": state, "attention_mask": attention_mask, **kwargs}

    def _validate_generation_mode(self, generation_mode, *args, **kwargs):
        """generate()'s check of the decoding mode, with our refusal of assisted and prompt-lookup decoding first: the
        same clear error on every transformers release (5.23 and 5.24 refused them through `_is_stateful`, which 5.25
        removed along with that check)."""
        if generation_mode == GenerationMode.ASSISTED_GENERATION:
            raise ValueError(ASSISTED_DECODING_MESSAGE.format(name=type(self).__name__))
        return super()._validate_generation_mode(generation_mode, *args, **kwargs)

    if not STATE_IS_CALLED_CACHE:

        def generate(self, *args, cache: CharRNNCache | None = None, **kwargs):
            """
            generate() of transformers < 5.24, which knows the state only as `past_key_values`, made to take and
            return it as `cache` too, so code written for 5.24+ (`generate(ids, cache=out.cache)`) runs unchanged.
            """
            if cache is not None:
                kwargs["past_key_values"] = cache
            output = super().generate(*args, **kwargs)
            if isinstance(output, ModelOutput) and getattr(output, "past_key_values", None) is not None:
                output.cache = output.past_key_values  # an attribute, not a field: to_tuple() stays as it was
            return output

    @can_return_tuple
    @_accepts_past_key_values
    def forward(
        self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
        cache: CharRNNCache | None = None, inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None, use_cache: bool | None = None, logits_to_keep: int | torch.Tensor = 0,
        output_hidden_states: bool | None = None, output_attentions: bool | None = None, **kwargs,
    ) -> CharRNNCausalLMOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Usually `input_ids` itself: the loss shifts them to score each position's next token. -100 is ignored.
        logits_to_keep (`int` or `torch.Tensor`, *optional*, defaults to 0):
            An int keeps the last that-many positions (0 keeps all); a 1D tensor keeps those sequence indices.
            generate() sets it to 1, so prompts of any length cost no more memory than a few chunks.
        Other arguments are those of [`CharRNNModel.forward`]; extra keyword arguments (such as Trainer's
        `num_items_in_batch`) reach the loss.
        """
        if self._is_plain_decoding_step(input_ids, inputs_embeds, attention_mask, cache, labels, use_cache,
                                        output_hidden_states, output_attentions, logits_to_keep):
            hidden, hidden_states = self.model.decode_step(input_ids, cache), None
        else:
            keep_last = logits_to_keep if isinstance(logits_to_keep, int) else 0
            outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, cache=cache,
                                 inputs_embeds=inputs_embeds, use_cache=use_cache, hidden_states_to_keep=keep_last,
                                 output_hidden_states=output_hidden_states, output_attentions=output_attentions)
            hidden, cache, hidden_states = outputs.last_hidden_state, outputs.cache, outputs.hidden_states
        if not isinstance(logits_to_keep, int):
            hidden = hidden[:, logits_to_keep]
        if self.output_projection is not None:
            hidden = self.output_projection(hidden)
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CharRNNCausalLMOutput(loss, logits, cache, hidden_states)  # positional: see the model

    def _is_plain_decoding_step(self, input_ids, inputs_embeds, attention_mask, cache, labels, use_cache,
                                output_hidden_states, output_attentions, logits_to_keep) -> bool:
        """Whether this call is generate()'s per-token step, which `CharRNNModel.decode_step` runs directly: one new
        token per row continuing a cache, no gradients, padding, labels or extra outputs, and nothing attached to the
        base model that calling it would run (torch hooks, or accelerate's, which replace its forward)."""
        base = self.model
        return (
            input_ids is not None and inputs_embeds is None and attention_mask is None and labels is None
            and not output_attentions
            and isinstance(cache, CharRNNCache) and input_ids.dim() == 2 and input_ids.shape[1] == 1
            and cache.batch_size == input_ids.shape[0] and isinstance(logits_to_keep, int)
            and not (torch.is_grad_enabled() or self.training or _is_tracing())
            and (self.config.use_cache if use_cache is None else use_cache)
            and not (self.config.output_hidden_states if output_hidden_states is None else output_hidden_states)
            and _runs_as_built(base)
        )


__all__ = ["CharRNNCache", "CharRNNCausalLMOutput", "CharRNNForCausalLM", "CharRNNModel", "CharRNNModelOutput",
           "CharRNNPreTrainedModel", "OneHotEncoding"]
