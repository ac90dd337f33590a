"""What transformers' common model and generation tests check, for every cell and both input encodings.

transformers' own models pass `ModelTesterMixin` / `GenerationTesterMixin` (tests/test_modeling_common.py,
tests/generation/test_utils.py in its repository); tools such as the pipeline, PEFT and export paths rely on what they
check. These are the same checks written for CharRNN, against independent expectations: per-layer outputs against one
plain `nn.LSTM`/`nn.GRU`/`nn.RNN` per layer, generation against a loop that re-runs the whole sequence, batches
against rows run alone, loading against the saved model.
"""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import hf_charrnn.modeling_charrnn as modeling
from testing_utils import tiny_model
from hf_charrnn import CharRNNCache, CharRNNConfig, CharRNNForCausalLM
from hf_charrnn.configuration_charrnn import CELL_TYPES
from hf_charrnn.modeling_charrnn import OneHotEncoding
from transformers import AutoModelForCausalLM

ENCODINGS = ["embedding", "one_hot"]
LAYERS = 3
PROMPT = torch.tensor([[3, 7, 1, 12, 5, 9], [4, 4, 2, 18, 6, 11]])  # no 0: generate() would guess 0 is padding


@pytest.fixture(params=[(cell, encoding) for cell in CELL_TYPES for encoding in ENCODINGS],
                ids=lambda pair: f"{pair[0]}-{pair[1]}")
def model(request) -> CharRNNForCausalLM:
    cell_type, encoding = request.param
    return tiny_model(cell_type=cell_type, input_encoding=encoding, num_layers=LAYERS)


def layer_by_layer_reference(model, input_ids) -> list[torch.Tensor]:
    """The input encoding, then each layer's outputs, from one single-layer plain torch module per layer."""
    config = model.config
    if config.input_encoding == "one_hot":
        layer_input = F.one_hot(input_ids, config.vocab_size).float()
    else:
        layer_input = F.embedding(input_ids, model.model.embeddings.weight)
    outputs = [layer_input]
    for layer in range(config.num_layers):
        kind = {"lstm": nn.LSTM, "gru": nn.GRU}.get(config.cell_type, nn.RNN)
        options = {"nonlinearity": config.cell_type[4:]} if kind is nn.RNN else {}
        rnn = kind(layer_input.shape[-1], config.hidden_size, 1, batch_first=True, **options)
        rnn.load_state_dict({f"{name}_l0": getattr(model.model.rnn, f"{name}_l{layer}")
                             for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
        layer_input, _ = rnn(layer_input)
        outputs.append(layer_input)
    return outputs


def assert_all_close(actual, expected, atol=1e-5):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=atol)


# ----------------------------------------------------------------------------------------------------------------------
# Hidden states
# ----------------------------------------------------------------------------------------------------------------------


def test_hidden_states_are_the_encoding_then_every_layer(model):
    with torch.no_grad():
        plain = model(PROMPT)
        output = model(PROMPT, output_hidden_states=True)
        base = model.model(PROMPT, output_hidden_states=True)
    assert len(output.hidden_states) == LAYERS + 1
    widths = [model.config.input_size] + [model.config.hidden_size] * LAYERS
    assert [tuple(h.shape) for h in output.hidden_states] == [(2, PROMPT.shape[1], width) for width in widths]
    assert_all_close(output.hidden_states, layer_by_layer_reference(model, PROMPT))
    torch.testing.assert_close(output.logits, plain.logits, rtol=0, atol=1e-6)  # the fused path, same numbers
    assert plain.hidden_states is None and "hidden_states" not in plain
    torch.testing.assert_close(base.hidden_states[-1], base.last_hidden_state, rtol=0, atol=0)
    model.config.output_hidden_states = True  # the config's default, as in transformers
    assert len(model(PROMPT).hidden_states) == LAYERS + 1
    assert model(PROMPT, return_dict=False)[-1][0].shape[-1] == model.config.input_size  # tuple output: last item


def test_hidden_states_with_padding_equal_the_unpadded_row(model):
    padded = torch.cat([torch.full((1, 3), 0), PROMPT[:1]], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones_like(PROMPT[:1])], dim=1)
    with torch.no_grad():
        alone = model(PROMPT[:1], output_hidden_states=True).hidden_states
        left = model(padded, attention_mask=mask, output_hidden_states=True).hidden_states
    assert_all_close([h[:, 3:] for h in left[1:]], alone[1:])


def test_hidden_states_across_a_cache_and_chunks_equal_one_call(model, monkeypatch):
    with torch.no_grad():
        whole = model(PROMPT, output_hidden_states=True).hidden_states
        first = model(PROMPT[:, :4], use_cache=True, output_hidden_states=True)
        rest = model(PROMPT[:, 4:], cache=first.cache, use_cache=True, output_hidden_states=True)
        assert_all_close([torch.cat(parts, dim=1) for parts in zip(first.hidden_states, rest.hidden_states)], whole)
        monkeypatch.setattr(modeling, "INFERENCE_CHUNK_LENGTH", 4)  # the long-prompt path, in windows
        chunked = model(PROMPT, output_hidden_states=True, logits_to_keep=1)
    assert_all_close(chunked.hidden_states, whole)
    assert chunked.logits.shape[1] == 1


@pytest.mark.parametrize("padded", [False, True])
def test_hidden_states_are_the_tensors_gradients_flow_through(model, padded):
    """As ModelTesterMixin.test_retain_grad_hidden_states_attentions asks: the loss's gradient reaches each one."""
    model.train()
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]) if padded else None
    output = model(PROMPT, attention_mask=mask, output_hidden_states=True)
    learned = output.hidden_states[int(model.config.input_encoding == "one_hot"):]  # a one-hot input is fixed
    for hidden in learned:
        hidden.retain_grad()
    output.logits.sum().backward()
    assert all(hidden.grad is not None and hidden.grad.abs().sum() > 0 for hidden in learned)
    assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0
               for name, parameter in model.named_parameters() if name.startswith("model.rnn"))


def test_output_attentions_is_refused_with_the_reason(model):
    with pytest.raises(ValueError, match="recurrent model and has no attention weights"):
        model(PROMPT, output_attentions=True)
    with pytest.raises(ValueError, match="no attention weights"):
        model.generate(PROMPT, max_new_tokens=2, return_dict_in_generate=True, output_attentions=True)


# ----------------------------------------------------------------------------------------------------------------------
# generate(): every decoding mode's dict output
# ----------------------------------------------------------------------------------------------------------------------


def rerun_greedy(model, input_ids, new_tokens):
    """Greedy decoding the slow way: the whole sequence from a zero state for every token, no cache."""
    ids = input_ids
    for _ in range(new_tokens):
        with torch.no_grad():
            logits = model(ids, use_cache=False).logits[:, -1]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids


@pytest.mark.parametrize("mode", ["greedy", "sample", "beam", "beam_sample"])
def test_generate_returns_scores_logits_and_hidden_states_in_every_mode(model, mode):
    options = {"greedy": dict(do_sample=False), "sample": dict(do_sample=True, top_k=0),
               "beam": dict(do_sample=False, num_beams=2), "beam_sample": dict(do_sample=True, num_beams=2)}[mode]
    new_tokens, rows = 4, PROMPT.shape[0] * options.get("num_beams", 1)
    torch.manual_seed(0)
    output = model.generate(PROMPT, max_new_tokens=new_tokens, min_new_tokens=new_tokens, output_scores=True,
                            output_logits=True, output_hidden_states=True, return_dict_in_generate=True, **options)
    assert output.sequences.shape == (PROMPT.shape[0], PROMPT.shape[1] + new_tokens)
    assert len(output.scores) == len(output.logits) == len(output.hidden_states) == new_tokens
    assert all(s.shape == (rows, model.config.vocab_size) for s in output.scores + output.logits)
    for step, layers in enumerate(output.hidden_states):
        length = PROMPT.shape[1] if step == 0 else 1  # the prompt pass, then one token per step
        assert len(layers) == LAYERS + 1
        assert [tuple(h.shape) for h in layers[1:]] == [(rows, length, model.config.hidden_size)] * LAYERS
    if mode == "greedy":
        assert torch.equal(output.sequences, rerun_greedy(model, PROMPT, new_tokens))
        torch.testing.assert_close(output.hidden_states[0], tuple(layer_by_layer_reference(model, PROMPT)),
                                   rtol=1e-4, atol=1e-5)
    if mode.startswith("beam"):
        assert output.sequences_scores.shape == (PROMPT.shape[0],) and output.beam_indices.shape[0] == PROMPT.shape[0]


def test_generate_from_inputs_embeds_continues_like_input_ids(model):
    embeds = model.get_input_embeddings()(PROMPT)
    from_ids = model.generate(PROMPT, max_new_tokens=5, do_sample=False)
    from_embeds = model.generate(inputs_embeds=embeds, max_new_tokens=5, do_sample=False)
    assert torch.equal(from_embeds, from_ids[:, PROMPT.shape[1]:])  # decoder-only: only the new tokens come back


# ----------------------------------------------------------------------------------------------------------------------
# The input embedding, resizing, saving, batching, padding
# ----------------------------------------------------------------------------------------------------------------------


def test_the_input_embedding_is_a_module_for_both_encodings(model):
    embedding = model.get_input_embeddings()
    assert embedding is model.model.get_input_embeddings() and isinstance(embedding, nn.Module)
    with torch.no_grad():
        torch.testing.assert_close(model(inputs_embeds=embedding(PROMPT)).logits, model(PROMPT).logits,
                                   rtol=0, atol=0)
    assert embedding.weight.shape == (model.config.vocab_size, model.config.input_size)
    if model.config.input_encoding == "one_hot":
        assert isinstance(embedding, OneHotEncoding) and not list(embedding.parameters())
        torch.testing.assert_close(embedding.weight, torch.eye(model.config.vocab_size))
        assert embedding(PROMPT).to(torch.bfloat16).dtype == model.to(torch.bfloat16).model.embeddings(PROMPT).dtype


def test_resize_grows_the_vocabulary_or_says_why_not(model):
    vocab = model.config.vocab_size
    with torch.no_grad():
        before = model(PROMPT).logits
    if model.config.input_encoding == "one_hot":
        with pytest.raises(ValueError, match="one_hot.*input width is the vocabulary size"):
            model.resize_token_embeddings(vocab + 3)
        return
    model.resize_token_embeddings(vocab + 3, mean_resizing=False)
    assert model.config.vocab_size == vocab + 3 and model.lm_head.weight.shape[0] == vocab + 3
    with torch.no_grad():
        after = model(torch.cat([PROMPT, torch.full((2, 1), vocab + 2)], dim=1)).logits
    torch.testing.assert_close(after[:, : PROMPT.shape[1], :vocab], before, rtol=0, atol=1e-6)


@pytest.mark.parametrize("new_size, pad_to", [(2, None), (3, None), (1, 2)])
def test_a_resize_that_would_drop_a_special_token_is_refused_before_anything_changes(new_size, pad_to):
    """transformers' common resize test shrinks the vocabulary below its special ids (transformers only warns); the
    config would then not load again, so ours refuses and says what to do."""
    model = tiny_model(eos_token_id=3)  # and bos_token_id=2
    weights = model.model.embeddings.weight.clone()
    with pytest.raises(ValueError, match=r"would drop the special tokens .*eos_token_id=3.*Keep at least 4 tokens"):
        model.resize_token_embeddings(new_size, pad_to_multiple_of=pad_to)
    assert model.config.vocab_size == weights.shape[0] and torch.equal(model.model.embeddings.weight, weights)


def test_a_shrink_that_keeps_the_special_tokens_saves_and_loads(tmp_path):
    model = tiny_model()
    model.resize_token_embeddings(6, pad_to_multiple_of=4)  # rounds up to 8; ids 0-3 stay
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.config.vocab_size == 8 and loaded.lm_head.weight.shape[0] == 8
    torch.testing.assert_close(loaded.model.embeddings.weight, model.model.embeddings.weight[:8], rtol=0, atol=0)


def test_save_and_load_keep_every_output(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert_all_close(loaded(PROMPT, output_hidden_states=True).hidden_states,
                         model(PROMPT, output_hidden_states=True).hidden_states, atol=0)


def test_a_batch_equals_its_rows_run_alone_padded_or_not(model):
    padded = torch.tensor([[0, 0, 3, 7, 1], [4, 4, 2, 18, 9]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        batch = model(PROMPT).logits
        rows = torch.cat([model(PROMPT[i : i + 1]).logits for i in range(2)])
        generated = model.generate(padded, attention_mask=mask, max_new_tokens=5, do_sample=False)
        alone = model.generate(padded[:1, 2:], max_new_tokens=5, do_sample=False)
    torch.testing.assert_close(batch, rows, rtol=1e-5, atol=1e-5)
    assert torch.equal(generated[0, 2:], alone[0])  # left padding changes nothing


def test_a_config_changed_after_it_was_built_gets_the_projects_message():
    config = CharRNNConfig(vocab_size=10, input_encoding="one_hot")
    config.tie_word_embeddings = True
    with pytest.raises(ValueError, match="tie_word_embeddings=True needs input_encoding='embedding'"):
        CharRNNForCausalLM(config)
    config = CharRNNConfig(vocab_size=10)
    config.cell_type = "transformer"
    with pytest.raises(ValueError, match="cell_type='transformer' is not supported"):
        CharRNNForCausalLM(config)


# ----------------------------------------------------------------------------------------------------------------------
# torch.export
# ----------------------------------------------------------------------------------------------------------------------


class DecodeStep(nn.Module):
    """One token and the state in, the logits and the new state out: what an exported decoder runs per token."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, *state):
        output = self.model(input_ids, cache=CharRNNCache(*state), use_cache=True)
        return (output.logits, *output.cache.tensors)


@pytest.mark.filterwarnings("ignore:The tensor attributes self.model.rnn._flat_weights")  # torch's own, for nn.RNN
def test_the_forward_and_the_decode_step_export(model):
    batch = torch.export.Dim("batch", min=1, max=64)
    with torch.no_grad():
        forward = torch.export.export(model, (PROMPT,), {"use_cache": False},
                                      dynamic_shapes={"input_ids": {0: batch}, "use_cache": None}, strict=False)
        three_rows = torch.cat([PROMPT, PROMPT[:1]])
        torch.testing.assert_close(forward.module()(three_rows, use_cache=False).logits, model(three_rows).logits)
        state = CharRNNCache.zeros(model.config, 3).tensors
        token = torch.tensor([[5], [1], [9]])
        step = torch.export.export(DecodeStep(model), (token, *state), strict=False)
        assert_all_close(step.module()(token, *state), DecodeStep(model)(token, *state), atol=1e-6)
