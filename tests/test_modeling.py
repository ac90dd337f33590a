"""The model against plain PyTorch references, hand computations and round trips."""


import pytest
import torch
from torch import nn
from torch.nn import functional as F

import hf_charrnn.modeling_charrnn as modeling
from testing_utils import one_token_at_a_time, tiny_config, tiny_model
from hf_charrnn import CharRNNCache, CharRNNConfig, CharRNNForCausalLM, CharRNNModel
from transformers import AutoModel, AutoModelForCausalLM

REFERENCE_RNNS = {
    "lstm": lambda c: nn.LSTM(c.input_size, c.hidden_size, c.num_layers, batch_first=True),
    "gru": lambda c: nn.GRU(c.input_size, c.hidden_size, c.num_layers, batch_first=True),
    "rnn_tanh": lambda c: nn.RNN(c.input_size, c.hidden_size, c.num_layers, nonlinearity="tanh", batch_first=True),
    "rnn_relu": lambda c: nn.RNN(c.input_size, c.hidden_size, c.num_layers, nonlinearity="relu", batch_first=True),
}


def reference_logits(model: CharRNNForCausalLM, input_ids: torch.Tensor) -> torch.Tensor:
    """The same weights in plain torch modules, wired by hand."""
    config = model.config
    rnn = REFERENCE_RNNS[config.cell_type](config)
    rnn.load_state_dict(model.model.rnn.state_dict())
    if config.input_encoding == "one_hot":
        vectors = F.one_hot(input_ids, config.vocab_size).float()
    else:
        vectors = F.embedding(input_ids, model.model.embeddings.weight)
    output, _ = rnn(vectors)
    if model.output_projection is not None:
        output = output @ model.output_projection.weight.T
    return output @ model.lm_head.weight.T + model.lm_head.bias


@pytest.mark.parametrize("input_encoding", ["embedding", "one_hot"])
def test_logits_equal_plain_torch_reference(cell_type, input_encoding):
    model = tiny_model(cell_type=cell_type, input_encoding=input_encoding)
    input_ids = torch.randint(0, 24, (3, 11))
    with torch.no_grad():
        assert torch.allclose(model(input_ids).logits, reference_logits(model, input_ids), atol=1e-5)


@pytest.mark.parametrize("grad", [False, True], ids=["fused-step", "cell-kernels"])
def test_single_token_steps_match_the_sequence_kernel(cell_type, grad):
    """The decoding step (one product per layer without gradients, the cell kernels with them) and the sequence
    kernel compute the same function."""
    model = tiny_model(cell_type=cell_type)
    input_ids = torch.randint(0, 24, (2, 9))
    with torch.set_grad_enabled(grad):
        whole = model(input_ids).logits
        steps, cache, _ = one_token_at_a_time(model, input_ids)
    assert torch.allclose(steps, whole, atol=1e-5)
    assert cache.get_seq_length() == 9


@pytest.mark.parametrize("overrides", [{}, dict(input_encoding="one_hot"), dict(vocab_size=40)],
                         ids=["embedding", "one-hot", "vocabulary-wider-than-the-layer"])
def test_decoding_steps_from_token_ids_match_the_sequence_kernel(cell_type, overrides):
    """Without gradients, a step from token ids starts the first layer from a row of its tabulated input terms when
    the table is no larger than the layer's fused weight (the vocabulary no wider than input and state together),
    and from the encoded vector otherwise: the same function either way."""
    model = tiny_model(cell_type=cell_type, **overrides)
    input_ids = torch.randint(0, model.config.vocab_size, (3, 7))
    with torch.no_grad():
        steps = one_token_at_a_time(model, input_ids)[0]
        fused = model.model._fused_step_weights()
        assert torch.allclose(steps, model(input_ids).logits, atol=1e-5)
    tabulated = fused is not None and fused.input_terms is not None
    assert tabulated == (cell_type != "gru" and "vocab_size" not in overrides)
    model.model.embeddings.register_forward_hook(lambda module, args, output: output * 2)  # then it is called
    with torch.no_grad():
        torch.testing.assert_close(one_token_at_a_time(model, input_ids)[0], model(input_ids).logits, rtol=0,
                                   atol=1e-5)


def test_the_fused_step_follows_every_change_of_the_weights(cell_type):
    """Its prepared weights are rebuilt after an in-place update (an optimizer step), a load and a dtype change."""
    model, other = tiny_model(cell_type=cell_type), tiny_model(seed=1, cell_type=cell_type)
    input_ids = torch.randint(0, 24, (2, 6))
    with torch.no_grad():
        one_token_at_a_time(model, input_ids)  # prepares the fused weights
        for module in (model.model.rnn, model.model.embeddings):  # the first layer's input terms fold in both
            for parameter in module.parameters():
                parameter.mul_(0.5)  # in place, as an optimizer step
            assert torch.allclose(one_token_at_a_time(model, input_ids)[0], model(input_ids).logits, atol=1e-5)
        model.load_state_dict(other.state_dict())
        assert torch.allclose(one_token_at_a_time(model, input_ids)[0], other(input_ids).logits, atol=1e-5)
        model.to(torch.float64)
        steps = one_token_at_a_time(model, input_ids)[0]
        assert steps.dtype == torch.float64 and torch.allclose(steps, model(input_ids).logits, atol=1e-9)


def test_loss_is_next_token_cross_entropy_computed_by_hand():
    model = tiny_model()
    input_ids = torch.randint(0, 24, (2, 8))
    labels = input_ids.clone()
    labels[0, 5] = -100
    output = model(input_ids, labels=labels)
    logits, targets = output.logits[:, :-1], labels[:, 1:]
    keep = targets != -100
    expected = -torch.log_softmax(logits, dim=-1)[keep].gather(1, targets[keep][:, None]).mean()
    assert torch.allclose(output.loss, expected, atol=1e-6)
    # Trainer's num_items_in_batch makes the loss a sum over the tokens divided by that count.
    summed = model(input_ids, labels=labels, num_items_in_batch=torch.tensor(100)).loss
    assert torch.allclose(summed, expected * keep.sum() / 100, atol=1e-6)


def test_logits_to_keep_keeps_the_last_positions():
    model = tiny_model()
    input_ids = torch.randint(0, 24, (2, 10))
    with torch.no_grad():
        full = model(input_ids).logits
        assert torch.allclose(model(input_ids, logits_to_keep=1).logits, full[:, -1:], atol=1e-6)
        assert torch.allclose(model(input_ids, logits_to_keep=torch.tensor([2, 7])).logits, full[:, [2, 7]])


def test_long_inputs_are_chunked_without_changing_results(monkeypatch):
    model = tiny_model()
    input_ids = torch.randint(0, 24, (2, 50))
    with torch.no_grad():
        expected = model(input_ids).logits
        monkeypatch.setattr(modeling, "INFERENCE_CHUNK_LENGTH", 7)
        chunked = model(input_ids, use_cache=True)
        last_only = model(input_ids, logits_to_keep=3).logits
    assert torch.allclose(chunked.logits, expected, atol=1e-5)
    assert torch.allclose(last_only, expected[:, -3:], atol=1e-5)
    assert chunked.cache.get_seq_length() == 50


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_is_skipped_exactly(cell_type, side):
    """Each row of a padded batch gets the outputs and final state it gets alone; pads repeat the last output."""
    model = tiny_model(cell_type=cell_type)
    prompts = [torch.randint(4, 24, (n,)) for n in (6, 2, 4)]
    width = 6
    rows, masks = [], []
    for prompt in prompts:
        pad = torch.zeros(width - len(prompt), dtype=torch.long)
        ones, zeros = torch.ones(len(prompt), dtype=torch.long), torch.zeros(len(pad), dtype=torch.long)
        rows.append(torch.cat([pad, prompt] if side == "left" else [prompt, pad]))
        masks.append(torch.cat([zeros, ones] if side == "left" else [ones, zeros]))
    with torch.no_grad():
        batch = model(torch.stack(rows), attention_mask=torch.stack(masks), use_cache=True)
        for row, prompt in enumerate(prompts):
            alone = model(prompt[None], use_cache=True)
            assert torch.allclose(batch.logits[row, -1], alone.logits[0, -1], atol=1e-5)
            real = masks[row].bool()
            assert torch.allclose(batch.logits[row, real], alone.logits[0], atol=1e-5)
            for batch_state, alone_state in zip(batch.cache.tensors, alone.cache.tensors):
                assert torch.allclose(batch_state[:, row], alone_state[:, 0], atol=1e-5)


def test_a_padded_chunk_continues_from_the_carried_state():
    """A row that is all padding in this call keeps its state; its outputs are that state's output."""
    model = tiny_model()
    first = torch.randint(4, 24, (2, 5))
    second = torch.randint(4, 24, (2, 3))
    mask = torch.tensor([[1, 1, 1], [0, 0, 0]])
    with torch.no_grad():
        cache = model(first, use_cache=True).cache
        before = [t.clone() for t in cache.tensors]
        output = model.model(second, attention_mask=mask, cache=cache, use_cache=True)
    for old, new in zip(before, cache.tensors):
        assert torch.equal(old[:, 1], new[:, 1])
    assert torch.allclose(output.last_hidden_state[1], before[0][-1, 1].expand(3, -1))


def test_tied_embeddings_with_projection_share_storage_and_survive_saving(tmp_path):
    model = tiny_model(tie_word_embeddings=True, embedding_dim=8, hidden_size=16)
    assert model.output_projection.weight.shape == (8, 16)
    assert model.lm_head.weight.data_ptr() == model.model.embeddings.weight.data_ptr()
    model.save_pretrained(tmp_path)
    loaded = CharRNNForCausalLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embeddings.weight.data_ptr()
    input_ids = torch.randint(0, 24, (1, 6))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids).logits, model(input_ids).logits)


def test_init_follows_char_rnn_and_opens_lstm_forget_gates():
    torch.manual_seed(0)
    config = tiny_config(initializer_range=0.05)
    model = CharRNNForCausalLM(config)
    for name, parameter in model.named_parameters():
        if "bias_ih" in name:
            forget = parameter[config.hidden_size : 2 * config.hidden_size]
            assert torch.all(forget == 1.0) and torch.count_nonzero(parameter) == config.hidden_size
        elif "bias" in name:
            assert torch.count_nonzero(parameter) == 0
        else:
            assert parameter.abs().max() <= 0.05 and parameter.std() > 0.02


def test_gru_and_rnn_init_use_the_same_bound(cell_type):
    torch.manual_seed(0)
    model = CharRNNForCausalLM(tiny_config(cell_type=cell_type, initializer_range=0.03))
    weights = [p for n, p in model.model.rnn.named_parameters() if n.startswith("weight")]
    assert all(w.abs().max() <= 0.03 for w in weights)


def test_hello_toy_learns_to_predict_ello_from_hell():
    """The seed tutorials' toy: vocabulary h, e, l, o; one-hot input; hidden size 3; a few hundred Adam steps."""
    torch.manual_seed(0)
    config = CharRNNConfig(
        vocab_size=4, cell_type="rnn_tanh", hidden_size=3, num_layers=1, input_encoding="one_hot",
        pad_token_id=None, unk_token_id=None, bos_token_id=None, eos_token_id=None,
    )
    model = CharRNNForCausalLM(config)
    alphabet = "helo"
    hello = torch.tensor([[alphabet.index(c) for c in "hello"]])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(200):
        loss = model(hello, labels=hello).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    predicted = model(hello[:, :4]).logits.argmax(-1)[0]
    assert "".join(alphabet[i] for i in predicted) == "ello"
    assert loss.item() < 0.05


def test_save_and_load_round_trip_through_auto_classes(tmp_path, cell_type):
    model = tiny_model(cell_type=cell_type)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))
    causal = AutoModelForCausalLM.from_pretrained(tmp_path)
    base = AutoModel.from_pretrained(tmp_path)
    assert type(causal) is CharRNNForCausalLM and type(base) is CharRNNModel
    input_ids = torch.randint(0, 24, (2, 7))
    with torch.no_grad():
        assert torch.equal(causal(input_ids).logits, model(input_ids).logits)
        assert torch.equal(base(input_ids).last_hidden_state, model.model(input_ids).last_hidden_state)


def test_saved_generation_config_samples_by_default(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    config = loaded.generation_config
    assert (config.do_sample, config.temperature, config.top_k, config.max_new_tokens) == (True, 0.8, 0, 200)
    assert (config.pad_token_id, config.bos_token_id) == (0, 2)


def test_cache_reorders_repeats_and_detaches():
    hidden = torch.arange(12.0).reshape(1, 3, 4).requires_grad_()
    cache = CharRNNCache(hidden * 1, hidden * 2, seen_tokens=5)
    cache.reorder_cache(torch.tensor([2, 2, 0]))
    assert torch.equal(cache.hidden[0, :, 0], torch.tensor([8.0, 8.0, 0.0]))
    cache.batch_repeat_interleave(2)
    assert cache.batch_size == 6 and torch.equal(cache.cell[0, :, 0], torch.tensor([16.0, 16, 16, 16, 0, 0]))
    assert cache.detach() is cache and not cache.hidden.requires_grad and cache.get_seq_length() == 5


# --- bad input -------------------------------------------------------------------------------------------------


def test_token_ids_outside_the_vocabulary_are_named():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"token id 24, outside this model's vocabulary \[0, 24\).*tokenizer"):
        model(torch.tensor([[1, 24]]))
    with pytest.raises(ValueError, match="token id -1"):
        model(torch.tensor([[-1, 2]]))


def test_empty_input_says_the_prompt_encoded_to_nothing():
    with pytest.raises(ValueError, match="prompt encoded to no tokens"):
        tiny_model()(torch.zeros((1, 0), dtype=torch.long))


def test_mismatched_attention_mask_is_named():
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 3\).*\(2, 5\)"):
        tiny_model()(torch.ones((2, 5), dtype=torch.long), attention_mask=torch.ones((2, 3)))


def test_a_foreign_cache_is_refused():
    with pytest.raises(TypeError, match="CharRNNCache"):
        tiny_model()(torch.ones((1, 2), dtype=torch.long), cache=(torch.zeros(1),))


def test_missing_weights_file_is_a_clear_error(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(OSError, match="model.safetensors"):
        AutoModelForCausalLM.from_pretrained(tmp_path)


def test_corrupt_weights_file_is_a_clear_error(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: 200])
    with pytest.raises(OSError, match="corrupt or truncated.*save_pretrained"):
        AutoModelForCausalLM.from_pretrained(tmp_path)


def test_pickled_weights_are_never_loaded(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(OSError):
        AutoModelForCausalLM.from_pretrained(tmp_path)


# ----------------------------------------------------------------------------------------------------------------------
# Training-only regularizers (AWD-LSTM's): embedding dropout, weight drop, locked (variational) dropout
# ----------------------------------------------------------------------------------------------------------------------

REGULARIZED = dict(embedding_dropout=0.2, weight_dropout=0.5, dropout=0.3, variational_dropout=True)


def awd_reference_logits(model: CharRNNForCausalLM, input_ids: torch.Tensor, seed: int) -> torch.Tensor:
    """AWD-LSTM's training forward written out with one plain `nn.LSTM`/`nn.GRU`/`nn.RNN` per layer, drawing its masks
    from `seed` in the order the paper's code does: embedding rows, each layer's hidden-to-hidden weights, then a
    locked mask between layers and on the output."""
    config = model.config
    rnns = [REFERENCE_RNNS[config.cell_type](tiny_config(  # built first: their initialisation draws random numbers
        cell_type=config.cell_type, num_layers=1, hidden_size=config.hidden_size,
        embedding_dim=config.embedding_dim if layer == 0 else config.hidden_size)) for layer in range(config.num_layers)]
    torch.manual_seed(seed)
    keep_rows = torch.empty(config.vocab_size).bernoulli_(1 - config.embedding_dropout) / (1 - config.embedding_dropout)
    vectors = F.embedding(input_ids, model.model.embeddings.weight * keep_rows[:, None])
    layers = []
    for layer, rnn in enumerate(rnns):
        weights = {name.replace(f"_l{layer}", "_l0"): value for name, value in model.model.rnn.named_parameters()
                   if name.endswith(f"_l{layer}")}
        weights["weight_hh_l0"] = F.dropout(weights["weight_hh_l0"], config.weight_dropout, True)
        layers.append((rnn, weights))
    for rnn, weights in layers:
        vectors, _ = torch.func.functional_call(rnn, weights, (vectors,))
        locked = torch.empty(vectors.shape[0], 1, vectors.shape[2]).bernoulli_(1 - config.dropout) / (1 - config.dropout)
        vectors = vectors * locked
    return vectors @ model.lm_head.weight.T + model.lm_head.bias


def test_training_regularizers_compute_awd_lstm_forward(cell_type):
    model = tiny_model(cell_type=cell_type, **REGULARIZED).train()
    input_ids = torch.randint(0, 24, (3, 11))
    torch.manual_seed(7)
    logits = model(input_ids).logits
    assert torch.allclose(logits, awd_reference_logits(model, input_ids, seed=7), atol=1e-5)


def test_regularizers_are_off_at_inference_and_invisible_to_saved_weights(tmp_path):
    regularized, plain = tiny_model(**REGULARIZED), tiny_model()
    input_ids = torch.randint(0, 24, (2, 9))
    with torch.no_grad():
        assert torch.equal(regularized(input_ids).logits, plain(input_ids).logits)
    regularized.save_pretrained(tmp_path)
    loaded = CharRNNForCausalLM.from_pretrained(tmp_path)
    assert {name: getattr(loaded.config, name) for name in REGULARIZED} == REGULARIZED
    assert loaded.state_dict().keys() == plain.state_dict().keys()


def test_weight_drop_masks_hidden_weights_once_per_call_and_trains_through_them():
    """The same weight mask at every time step: a one-layer RNN's output at step t equals running the dropped weights
    by hand; the gradient reaches the undropped weight matrix, zero where the mask dropped."""
    model = tiny_model(cell_type="rnn_tanh", num_layers=1, weight_dropout=0.5).train()
    input_ids = torch.randint(0, 24, (2, 6))
    torch.manual_seed(3)
    hidden = model.model(input_ids).last_hidden_state
    torch.manual_seed(3)
    dropped = F.dropout(model.model.rnn.weight_hh_l0, 0.5, True)
    rnn = model.model.rnn
    state = torch.zeros(2, 16)
    for step in range(6):
        x = model.model.embeddings(input_ids[:, step])
        state = torch.tanh(x @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + state @ dropped.T + rnn.bias_hh_l0)
        assert torch.allclose(hidden[:, step], state, atol=1e-5)
    hidden.sum().backward()
    gradient = rnn.weight_hh_l0.grad
    assert torch.all(gradient[dropped == 0] == 0) and gradient[dropped != 0].abs().sum() > 0


@pytest.mark.parametrize("variational", [True, False])
def test_variational_dropout_keeps_one_mask_over_time(variational):
    model = tiny_model(num_layers=1, dropout=0.5, variational_dropout=variational).train()
    hidden = model.model(torch.randint(0, 24, (4, 12))).last_hidden_state
    dropped = hidden == 0
    same_over_time = bool((dropped == dropped[:, :1]).all())
    assert same_over_time == variational
    assert dropped.any() and not dropped.all()


def test_embedding_dropout_drops_a_character_everywhere_in_the_batch():
    model = tiny_model(embedding_dropout=0.5).train()
    seen = {}
    model.model.rnn.register_forward_pre_hook(lambda module, args: seen.setdefault("vectors", args[0]))
    input_ids = torch.randint(0, 24, (4, 30))
    model(input_ids)
    table = model.model.embeddings.weight
    for token in input_ids.unique():
        rows = seen["vectors"][input_ids == token]
        factor = 0.0 if rows[0].abs().sum() == 0 else 2.0  # dropped, or kept and scaled by 1 / (1 - p)
        assert torch.allclose(rows, (table[token] * factor).expand_as(rows))
    kept = {int(t) for t in input_ids.unique() if seen["vectors"][input_ids == t][0].abs().sum() > 0}
    assert 0 < len(kept) < len(input_ids.unique())
