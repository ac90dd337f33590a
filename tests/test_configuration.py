import pytest

from hf_charrnn import CharRNNConfig
from transformers import AutoConfig


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("cell_type", "transformer", "lstm"),
        ("input_encoding", "bytes", "one_hot"),
        ("hidden_size", 0, "positive integer"),
        ("num_layers", -1, "positive integer"),
        ("vocab_size", 2.5, "positive integer"),
        ("embedding_dim", 0, "positive integer"),
        ("dropout", 1.0, "[0, 1)"),
        ("embedding_dropout", -0.1, "[0, 1)"),
        ("weight_dropout", 1.5, "[0, 1)"),
        ("weight_dropout", True, "[0, 1)"),
        ("variational_dropout", 1, "True or False"),
        ("initializer_range", 0, "positive"),
        ("eos_token_id", 500, "vocab_size"),
    ],
)
def test_invalid_values_name_the_field_and_the_allowed_values(field, value, allowed):
    with pytest.raises(ValueError) as error:
        CharRNNConfig(**{field: value})
    assert field in str(error.value) and allowed in str(error.value)


def test_tying_one_hot_inputs_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="input_encoding='embedding'"):
        CharRNNConfig(input_encoding="one_hot", tie_word_embeddings=True)


def test_defaults_are_the_documented_two_layer_512_lstm():
    config = CharRNNConfig()
    assert (config.cell_type, config.num_layers, config.hidden_size, config.embedding_dim) == ("lstm", 2, 512, 128)
    assert config.input_size == 128
    assert CharRNNConfig(input_encoding="one_hot", vocab_size=40).input_size == 40


def test_round_trip_through_autoconfig(tmp_path):
    config = CharRNNConfig(vocab_size=70, cell_type="gru", hidden_size=64, dropout=0.25, tie_word_embeddings=True,
                           embedding_dropout=0.1, weight_dropout=0.4, variational_dropout=True)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is CharRNNConfig
    for field in ("vocab_size", "cell_type", "hidden_size", "dropout", "tie_word_embeddings", "eos_token_id",
                  "embedding_dropout", "weight_dropout", "variational_dropout"):
        assert getattr(loaded, field) == getattr(config, field)
