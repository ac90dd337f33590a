"""Configuration of CharRNN models: classic recurrent language models (LSTM, GRU, tanh/ReLU RNN)."""

from transformers import PretrainedConfig

CELL_TYPES = ("lstm", "gru", "rnn_tanh", "rnn_relu")
INPUT_ENCODINGS = ("embedding", "one_hot")
SPECIAL_TOKEN_ID_NAMES = ("pad_token_id", "unk_token_id", "bos_token_id", "eos_token_id")
REGULARIZATION_FIELDS = ("dropout", "embedding_dropout", "weight_dropout", "variational_dropout")
"""The config fields that act in training only (the model computes the same function without them at inference)."""


class CharRNNConfig(PretrainedConfig):
    r"""
    Configuration for [`CharRNNModel`] and [`CharRNNForCausalLM`].

    The defaults give a 2-layer, 512-unit LSTM over a 128-dimensional embedding: the size the classic
    char-rnn tutorials use for Shakespeare-sized corpora, and small enough to train and sample on a CPU.

    Args:
        vocab_size (`int`, *optional*, defaults to 100):
            Number of tokens (characters plus special tokens) the model reads and predicts.
        cell_type (`str`, *optional*, defaults to `"lstm"`):
            Recurrent cell: `"lstm"`, `"gru"`, `"rnn_tanh"` (Elman RNN) or `"rnn_relu"`.
        embedding_dim (`int`, *optional*, defaults to 128):
            Size of the learned input embedding. Ignored when `input_encoding="one_hot"`, where the input size is
            `vocab_size`.
        hidden_size (`int`, *optional*, defaults to 512):
            Number of units in each recurrent layer.
        num_layers (`int`, *optional*, defaults to 2):
            Number of stacked recurrent layers.
        dropout (`float`, *optional*, defaults to 0.0):
            Dropout probability between recurrent layers and on the output of the last layer (training only).
        embedding_dropout (`float`, *optional*, defaults to 0.0):
            Probability of dropping a whole character from the input for one batch (training only): every occurrence
            of a dropped token reads a zero vector, the others are scaled by `1 / (1 - p)` (Gal & Ghahramani's
            embedding dropout, as AWD-LSTM applies it).
        weight_dropout (`float`, *optional*, defaults to 0.0):
            DropConnect on the hidden-to-hidden weights of every recurrent layer (training only): one mask per batch,
            shared by every time step (AWD-LSTM's weight drop, Merity et al. 2017). The recurrence still runs in the
            fused kernels.
        variational_dropout (`bool`, *optional*, defaults to `False`):
            Draw the masks of `dropout` once per sequence and feature and keep them over all its time steps (locked
            or variational dropout) instead of anew at every step.
        input_encoding (`str`, *optional*, defaults to `"embedding"`):
            `"embedding"` (a learned `nn.Embedding`) or `"one_hot"` (one-hot vectors, as in the classic tutorials).
        tie_word_embeddings (`bool`, *optional*, defaults to `False`):
            Share the input embedding matrix with the output layer. When `embedding_dim != hidden_size` a linear
            projection from `hidden_size` to `embedding_dim` is inserted before the output layer. Needs
            `input_encoding="embedding"`.
        initializer_range (`float`, *optional*, defaults to 0.08):
            Weights are drawn uniformly from `[-initializer_range, initializer_range]` (char-rnn's scheme); the
            LSTM forget-gate bias starts at 1.
        use_cache (`bool`, *optional*, defaults to `True`):
            Whether forward returns the recurrent state (`cache`) so generation costs O(1) per token.
        pad_token_id, unk_token_id, bos_token_id, eos_token_id (`int`, *optional*):
            Ids of the special tokens; the character tokenizer puts them at 0, 1, 2 and 3.

    Example:

    ```python
    >>> from hf_charrnn import CharRNNConfig, CharRNNForCausalLM
    >>> config = CharRNNConfig(vocab_size=65, cell_type="gru", hidden_size=256)
    >>> model = CharRNNForCausalLM(config)
    ```
    """

    model_type = "charrnn"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]  # the state's name from 5.24 on, and before

    def __init__(
        self,
        vocab_size: int = 100,
        cell_type: str = "lstm",
        embedding_dim: int = 128,
        hidden_size: int = 512,
        num_layers: int = 2,
        dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        weight_dropout: float = 0.0,
        variational_dropout: bool = False,
        input_encoding: str = "embedding",
        tie_word_embeddings: bool = False,
        initializer_range: float = 0.08,
        use_cache: bool = True,
        pad_token_id: int | None = 0,
        unk_token_id: int | None = 1,
        bos_token_id: int | None = 2,
        eos_token_id: int | None = 3,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.cell_type = cell_type
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.embedding_dropout = embedding_dropout
        self.weight_dropout = weight_dropout
        self.variational_dropout = variational_dropout
        self.input_encoding = input_encoding
        self.tie_word_embeddings = tie_word_embeddings
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        self.pad_token_id = pad_token_id
        self.unk_token_id = unk_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        super().__init__(**kwargs)
        self.validate_charrnn_fields()

    @property
    def input_size(self) -> int:
        """Width of the vectors the first recurrent layer reads."""
        return self.vocab_size if self.input_encoding == "one_hot" else self.embedding_dim

    def validate_charrnn_fields(self) -> None:
        """Raise a `ValueError` naming the field and the allowed values, before any tensor is built."""
        if self.cell_type not in CELL_TYPES:
            raise ValueError(f"cell_type={self.cell_type!r} is not supported; choose one of {CELL_TYPES}.")
        if self.input_encoding not in INPUT_ENCODINGS:
            raise ValueError(
                f"input_encoding={self.input_encoding!r} is not supported; choose one of {INPUT_ENCODINGS}."
            )
        for name in ("vocab_size", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} is invalid; it must be a positive integer.")
        if self.input_encoding == "embedding" and (
            not isinstance(self.embedding_dim, int) or isinstance(self.embedding_dim, bool) or self.embedding_dim < 1
        ):
            raise ValueError(f"embedding_dim={self.embedding_dim!r} is invalid; it must be a positive integer.")
        for name in ("dropout", "embedding_dropout", "weight_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name}={value!r} is invalid; it must be a number in [0, 1).")
        if not isinstance(self.variational_dropout, bool):
            raise ValueError(f"variational_dropout={self.variational_dropout!r} is invalid; it must be True or False.")
        if not isinstance(self.initializer_range, (int, float)) or self.initializer_range <= 0:
            raise ValueError(f"initializer_range={self.initializer_range!r} is invalid; it must be a positive number.")
        if self.tie_word_embeddings and self.input_encoding == "one_hot":
            raise ValueError(
                "tie_word_embeddings=True needs input_encoding='embedding': one-hot inputs have no embedding matrix "
                "to share. Set tie_word_embeddings=False or input_encoding='embedding'."
            )
        for name in SPECIAL_TOKEN_ID_NAMES:
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and 0 <= value < self.vocab_size):
                raise ValueError(
                    f"{name}={value!r} is invalid; it must be None or an id in [0, vocab_size={self.vocab_size})."
                )


__all__ = ["CharRNNConfig"]
