"""generate() with the recurrent-state cache: every decoding mode equals recomputing from scratch."""

import pytest
import torch
from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module
from transformers import set_seed

from testing_utils import tiny_model
from hf_charrnn import CharRNNModel

PROMPT = torch.tensor([[5, 9, 13, 7, 21, 4]])


def generate_twice(model, **options):
    """The same call with the cache (one token a step) and without it (whole sequence a step)."""
    outputs = []
    for use_cache in (True, False):
        set_seed(1234)
        outputs.append(model.generate(PROMPT, max_new_tokens=12, use_cache=use_cache, **options))
    return outputs


@pytest.mark.parametrize(
    "options",
    [
        dict(do_sample=False),
        dict(do_sample=True, temperature=1.3),
        dict(do_sample=True, top_p=0.8, num_return_sequences=3),
        dict(do_sample=False, num_beams=4, num_return_sequences=2),
        dict(do_sample=True, num_beams=3),
    ],
    ids=["greedy", "sample", "top_p", "beam", "beam_sample"],
)
def test_cached_generation_equals_recomputation(cell_type, options):
    cached, recomputed = generate_twice(tiny_model(cell_type=cell_type), **options)
    assert cached.shape[1] == PROMPT.shape[1] + 12
    assert torch.equal(cached, recomputed)


def test_seeds_make_sampling_reproducible_and_different_seeds_differ():
    model = tiny_model()
    runs = {}
    for seed in (1, 1, 2):
        set_seed(seed)
        runs.setdefault(seed, []).append(model.generate(PROMPT, do_sample=True, max_new_tokens=40, temperature=2.0))
    assert torch.equal(runs[1][0], runs[1][1])
    assert not torch.equal(runs[1][0], runs[2][0])


class CountingHook(ModelHook):
    """An accelerate hook, as device placement and offloading attach to a module; it counts the calls it sees."""

    def __init__(self):
        self.calls = 0

    def pre_forward(self, module, *args, **kwargs):
        self.calls += 1
        return args, kwargs


def test_decoding_steps_skip_the_base_models_forward_unless_something_is_attached_to_it(cell_type, monkeypatch):
    """After the prompt, generate() runs each token through CharRNNModel.decode_step, without forward()'s argument
    handling; an accelerate hook or a torch hook on the base model sends every step through forward() instead (so
    the hook runs), with the same tokens."""
    model, steps = tiny_model(cell_type=cell_type), []
    decode_step = CharRNNModel.decode_step
    monkeypatch.setattr(CharRNNModel, "decode_step", lambda self, *args: steps.append(1) or decode_step(self, *args))

    def sample():
        set_seed(3)
        return model.generate(PROMPT, do_sample=True, max_new_tokens=10, min_new_tokens=10)

    direct = sample()
    assert len(steps) == 9  # the prompt goes through forward(), then one step per token but the last
    hook = CountingHook()
    add_hook_to_module(model.model, hook)
    assert torch.equal(sample(), direct) and hook.calls == 10 and len(steps) == 9
    remove_hook_from_module(model.model)
    forwards = []
    model.model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    assert torch.equal(sample(), direct) and len(forwards) == 10 and len(steps) == 9


@pytest.mark.parametrize("do_sample", [False, True])
def test_a_returned_cache_continues_like_one_long_call(cell_type, do_sample):
    model = tiny_model(cell_type=cell_type)
    set_seed(7)
    whole = model.generate(PROMPT, do_sample=do_sample, max_new_tokens=20)
    set_seed(7)
    first = model.generate(PROMPT, do_sample=do_sample, max_new_tokens=8, return_dict_in_generate=True)
    assert first.cache.get_seq_length() == PROMPT.shape[1] + 7  # the last token is not consumed yet
    second = model.generate(first.sequences, cache=first.cache, do_sample=do_sample, max_new_tokens=12)
    assert torch.equal(second, whole)


def test_left_padded_prompts_give_the_tokens_each_prompt_gives_alone(cell_type):
    model = tiny_model(cell_type=cell_type)
    prompts = [torch.tensor([5, 9, 13, 7, 21, 4]), torch.tensor([11, 6]), torch.tensor([8, 8, 17, 22])]
    width = max(len(p) for p in prompts)
    input_ids = torch.stack([torch.cat([torch.zeros(width - len(p), dtype=torch.long), p]) for p in prompts])
    attention_mask = torch.stack([torch.arange(width) >= width - len(p) for p in prompts]).long()
    batch = model.generate(input_ids, attention_mask=attention_mask, do_sample=False, max_new_tokens=15)
    for row, prompt in enumerate(prompts):
        alone = model.generate(prompt[None], do_sample=False, max_new_tokens=15)
        assert torch.equal(batch[row, width:], alone[0, len(prompt) :])


def test_padded_beam_search_matches_single_prompts():
    model = tiny_model(cell_type="gru")
    prompts = [torch.tensor([5, 9, 13, 7]), torch.tensor([11, 6])]
    input_ids = torch.tensor([[5, 9, 13, 7], [0, 0, 11, 6]])
    attention_mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    batch = model.generate(input_ids, attention_mask=attention_mask, do_sample=False, num_beams=3, max_new_tokens=8)
    for row, prompt in enumerate(prompts):
        alone = model.generate(prompt[None], do_sample=False, num_beams=3, max_new_tokens=8)
        assert torch.equal(batch[row, 4:], alone[0, len(prompt) :])


def test_generation_stops_at_eos_and_pads_finished_rows():
    model = tiny_model(eos_token_id=3)
    with torch.no_grad():  # make eos the certain next token after token 11
        model.lm_head.bias[3] = 1e4
    output = model.generate(torch.tensor([[11, 12], [13, 14]]), do_sample=False, max_new_tokens=10)
    assert output.shape == (2, 3) and torch.all(output[:, -1] == 3)


@pytest.mark.parametrize("assistance", [
    dict(assistant_model="tiny"), dict(prompt_lookup_num_tokens=3), dict(assistant_early_exit=1),
    dict(prompt_lookup_num_tokens=3, cache="ours"),  # with our cache passed, 5.25 would fail on a missing method
], ids=["assistant_model", "prompt_lookup", "early_exit", "prompt_lookup_with_cache"])
def test_assisted_and_prompt_lookup_decoding_are_refused_with_our_message(assistance):
    """On every release in the range: 5.23/5.24 had a refusal of their own (`_is_stateful`), 5.25 none."""
    model = tiny_model()
    if assistance.get("assistant_model") == "tiny":
        assistance["assistant_model"] = tiny_model(seed=1)
    if assistance.get("cache") == "ours":
        assistance["cache"] = model(PROMPT[:, :-1], use_cache=True).cache
    with pytest.raises(ValueError, match="CharRNNForCausalLM does not support assisted or prompt-lookup decoding.*"
                                         "Decode without them"):
        model.generate(PROMPT, do_sample=False, max_new_tokens=5, **assistance)


def test_negative_max_new_tokens_is_refused():
    with pytest.raises(ValueError, match="max_new_tokens"):
        tiny_model().generate(PROMPT, max_new_tokens=-1)


def test_an_empty_prompt_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="prompt encoded to no tokens.*eos_token"):
        tiny_model().generate(torch.zeros((1, 0), dtype=torch.long), max_new_tokens=3)
