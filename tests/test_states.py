"""Primed states (`hf_charrnn.states`): the prompt read once for any number of continuations, and a saved state that
continues exactly like one long generate() call, refused by any other model."""

import pytest
import torch
from safetensors.torch import save_file
from transformers import set_seed

from testing_utils import tiny_model
from hf_charrnn.states import StateMismatchError, continue_from, load_state, prime, save_state

PROMPT = torch.tensor([[5, 9, 13, 7, 21, 4, 11, 2]])
MORE = torch.tensor([[3, 8, 17]])


@pytest.mark.parametrize("options", [dict(do_sample=False), dict(do_sample=True, temperature=1.4,
                                                                 num_return_sequences=4)], ids=["greedy", "sampled"])
def test_continuing_a_primed_state_equals_one_generate_call(cell_type, options):
    model = tiny_model(cell_type=cell_type)
    set_seed(3)
    whole = model.generate(PROMPT, max_new_tokens=15, **options)
    state = prime(model, PROMPT)
    for _ in range(2):  # the same state serves again: generate() changed only a copy
        set_seed(3)
        assert torch.equal(continue_from(model, state, max_new_tokens=15, **options), whole)


def test_the_prompt_is_read_once_for_all_continuations():
    model = tiny_model()
    calls = []
    model.model.register_forward_hook(lambda module, args, kwargs, output: calls.append(
        tuple(kwargs["input_ids"].shape) if kwargs.get("input_ids") is not None else None), with_kwargs=True)
    state = prime(model, PROMPT)
    continue_from(model, state, do_sample=True, max_new_tokens=5, num_return_sequences=6)
    assert calls[0] == (1, PROMPT.shape[1] - 1)  # the prompt, once, on one row
    assert all(shape == (6, 1) for shape in calls[1:]) and len(calls) == 1 + 5  # then one token a step per copy


def test_a_saved_state_continues_like_one_long_call(tmp_path, cell_type):
    model = tiny_model(cell_type=cell_type)
    long_prompt = torch.randint(4, 24, (1, 2000))
    save_state(tmp_path / "state.safetensors", model, prime(model, long_prompt))
    assert (tmp_path / "state.safetensors").stat().st_size < 2048  # the state and one token, whatever the prompt
    loaded = load_state(tmp_path / "state.safetensors", model)
    kept = long_prompt.shape[1] - 1  # the loaded state starts at the prompt's last token: the tokens from there on
    set_seed(5)
    whole = model.generate(torch.cat([long_prompt, MORE], dim=1), do_sample=True, max_new_tokens=12)
    set_seed(5)
    continued = continue_from(model, prime(model, MORE, after=loaded), do_sample=True, max_new_tokens=12)
    assert torch.equal(continued, whole[:, kept:])
    set_seed(5)
    prompt_only = model.generate(long_prompt, do_sample=True, max_new_tokens=12)
    set_seed(5)
    assert torch.equal(continue_from(model, loaded, do_sample=True, max_new_tokens=12), prompt_only[:, kept:])


def test_a_state_from_another_model_or_no_state_at_all_is_refused(tmp_path):
    model, other = tiny_model(seed=0), tiny_model(seed=1)  # the same configuration, other weights
    path = tmp_path / "state.safetensors"
    save_state(path, model, prime(model, PROMPT))
    with pytest.raises(StateMismatchError, match="another model"):
        load_state(path, other)
    with pytest.raises(StateMismatchError, match="another model"):
        load_state(path, tiny_model(seed=0, hidden_size=24))
    (tmp_path / "text.safetensors").write_text("not a state")
    with pytest.raises(StateMismatchError, match="not a state saved by hf-charrnn"):
        load_state(tmp_path / "text.safetensors", model)
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "weights.safetensors"))  # a real safetensors file
    with pytest.raises(StateMismatchError, match="not a state saved by hf-charrnn"):
        load_state(tmp_path / "weights.safetensors", model)
    with pytest.raises(FileNotFoundError):
        load_state(tmp_path / "missing.safetensors", model)


def test_a_state_saved_in_bf16_continues_the_same_weights_loaded_in_fp32(tmp_path):
    model = tiny_model().to(torch.bfloat16)  # a checkpoint saved in bf16 ...
    path = tmp_path / "state.safetensors"
    save_state(path, model, prime(model, PROMPT))
    same_weights_in_fp32 = model.float()  # ... loaded in fp32: the same values, so the same model
    loaded = load_state(path, same_weights_in_fp32)
    assert loaded.cache.hidden.dtype == torch.float32
    assert continue_from(same_weights_in_fp32, loaded, do_sample=False, max_new_tokens=5).shape == (1, 6)
