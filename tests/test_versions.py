"""What hf_charrnn relies on from transformers, one test per hook, across the supported releases: the model state's
name (`past_key_values` up to 5.23, `cache` from 5.24 on), the generation hooks, the loading options.

The expectations come from the installed transformers itself: the first of its `ALL_CACHE_NAMES` is the name its
generate() passes to forward() and reads back from the outputs. The suite runs on both ends of the supported range
(CI runs it on the pinned newest release and again on 5.23.0), so each test checks the side it runs on.
"""

import dataclasses
import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache, GenerationConfig, GenerationMixin, set_seed
from transformers.generation.configuration_utils import GenerationMode
from transformers.generation.utils import ALL_CACHE_NAMES

from testing_utils import tiny_model
from hf_charrnn import CharRNNCache, CharRNNCausalLMOutput, CharRNNForCausalLM, CharRNNModelOutput

RELEASE_STATE_NAME = ALL_CACHE_NAMES[0]  # what generate() of the installed release passes and reads
PROMPT = torch.tensor([[5, 9, 13, 7, 21, 4]])


def field_names(output_class) -> list[str]:
    return [field.name for field in dataclasses.fields(output_class)]


def test_the_installed_release_names_the_state_one_of_two_ways():
    assert RELEASE_STATE_NAME in ("cache", "past_key_values")


@pytest.mark.parametrize(
    "output_class, fields",
    [(CharRNNModelOutput, ["last_hidden_state"]), (CharRNNCausalLMOutput, ["loss", "logits"])],
)
def test_outputs_hold_the_state_under_the_release_name_and_read_as_cache(output_class, fields):
    assert field_names(output_class) == fields + [RELEASE_STATE_NAME, "hidden_states"]
    cache = CharRNNCache(torch.zeros(2, 1, 4))
    output = output_class(**{fields[-1]: torch.ones(1), RELEASE_STATE_NAME: cache})
    assert output.cache is cache
    assert output.to_tuple() == (output[fields[-1]], cache)  # without hidden states, the state is the last element
    assert output[RELEASE_STATE_NAME] is cache


def test_forward_takes_the_state_as_cache(cell_type):
    model = tiny_model(cell_type=cell_type)
    with torch.no_grad():
        whole = model(PROMPT).logits
        first = model(PROMPT[:, :4], use_cache=True)
        rest = model(PROMPT[:, 4:], cache=first.cache, use_cache=True)
    assert torch.allclose(torch.cat([first.logits, rest.logits], dim=1), whole, atol=1e-5)
    assert rest.cache is first.cache and rest.cache.get_seq_length() == PROMPT.shape[1]


def test_the_old_keyword_still_works_and_warns_only_where_transformers_deprecated_it():
    model = tiny_model()
    with torch.no_grad():
        expected = model(PROMPT[:, 2:], cache=model(PROMPT[:, :2], use_cache=True).cache).logits
        start = model(PROMPT[:, :2], use_cache=True).cache
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            logits = model(PROMPT[:, 2:], past_key_values=start).logits
    assert torch.allclose(logits, expected, atol=1e-6)
    deprecations = [w for w in caught if issubclass(w.category, FutureWarning) and "past_key_values" in str(w.message)]
    if RELEASE_STATE_NAME == "cache":
        assert deprecations and "Use `cache` instead" in str(deprecations[0].message)
    else:  # before 5.24 it is the name generate() itself passes: no warning
        assert not deprecations


def test_both_names_at_once_are_refused():
    model = tiny_model()
    cache = model(PROMPT, use_cache=True).cache
    with pytest.raises(ValueError, match="cache"):
        model(PROMPT, cache=cache, past_key_values=cache)


@pytest.mark.parametrize("options", [dict(do_sample=True), dict(num_beams=3, do_sample=False)], ids=["sample", "beam"])
def test_generate_returns_the_state_as_cache_and_continues_from_it(options):
    model = tiny_model(cell_type="gru")
    set_seed(3)
    whole = model.generate(PROMPT, max_new_tokens=14, **options)
    set_seed(3)
    first = model.generate(PROMPT, max_new_tokens=6, return_dict_in_generate=True, **options)
    assert isinstance(first.cache, CharRNNCache)
    assert RELEASE_STATE_NAME in first  # where transformers' own output dataclass keeps it
    assert first.cache.get_seq_length() == PROMPT.shape[1] + 5  # the last sampled token is not consumed yet
    if options.get("num_beams", 1) == 1:  # beam search does not continue: a new call starts new beams
        second = model.generate(first.sequences, cache=first.cache, max_new_tokens=8, **options)
        assert torch.equal(second, whole)


def test_generate_still_takes_the_old_keyword():
    model = tiny_model()
    set_seed(5)
    whole = model.generate(PROMPT, do_sample=True, max_new_tokens=10)
    set_seed(5)
    first = model.generate(PROMPT, do_sample=True, max_new_tokens=4, return_dict_in_generate=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated from 5.24 on; the point here is that it works
        second = model.generate(first.sequences, past_key_values=first.cache, do_sample=True, max_new_tokens=6)
    assert torch.equal(second, whole)


# ----------------------------------------------------------------------------------------------------------------------
# The generation hooks the model relies on (read from transformers' generation/utils.py on 5.23-5.25). Each test names
# one: when a release changes it, that test fails, not the hundred that use generate().
# ----------------------------------------------------------------------------------------------------------------------


def test_generate_asks_the_model_to_validate_its_decoding_mode_before_decoding(monkeypatch):
    """Our refusal of assisted decoding lives in `_validate_generation_mode(mode, config, mode_kwargs)`, which
    generate() calls once per call with the mode it chose (5.25 dropped `_is_stateful`, the flag we used before)."""
    seen = []
    original = CharRNNForCausalLM._validate_generation_mode

    def recording(self, generation_mode, *args, **kwargs):
        seen.append(generation_mode)
        return original(self, generation_mode, *args, **kwargs)

    monkeypatch.setattr(CharRNNForCausalLM, "_validate_generation_mode", recording)
    model = tiny_model()
    model.generate(PROMPT, do_sample=False, max_new_tokens=2)
    model.generate(PROMPT, do_sample=True, max_new_tokens=2)
    model.generate(PROMPT, num_beams=2, do_sample=False, max_new_tokens=2)
    assert seen == [GenerationMode.GREEDY_SEARCH, GenerationMode.SAMPLE, GenerationMode.BEAM_SEARCH]


@pytest.mark.parametrize("options", [dict(prompt_lookup_num_tokens=3), dict(assistant_early_exit=1)])
def test_drafting_options_select_the_assisted_mode_we_refuse(options):
    assert GenerationConfig(**options).get_generation_mode() == GenerationMode.ASSISTED_GENERATION
    assert GenerationConfig(**options).get_generation_mode(assistant_model=None) == GenerationMode.ASSISTED_GENERATION


def test_generate_lets_the_model_decline_the_default_dynamic_cache():
    """generate() would give a class named ...ForCausalLM a DynamicCache (key/value) unless it declines."""
    assert hasattr(GenerationMixin, "_supports_default_dynamic_cache")  # the hook this release calls
    output = tiny_model().generate(PROMPT, do_sample=False, max_new_tokens=2, return_dict_in_generate=True)
    state = output[RELEASE_STATE_NAME]
    assert isinstance(state, CharRNNCache) and not isinstance(state, DynamicCache)


def test_loading_keeps_hub_kernels_off_on_every_release(tmp_path):
    """5.25 turns hub kernels on in from_pretrained by default (`use_kernels`, a keyword every release in the range
    takes); no hub kernel replaces a CharRNN layer, so ours loads with them off unless asked."""
    tiny_model().save_pretrained(tmp_path)
    for loaded in (CharRNNForCausalLM.from_pretrained(tmp_path), AutoModelForCausalLM.from_pretrained(tmp_path),
                   CharRNNForCausalLM.from_pretrained(tmp_path, use_kernels=False)):
        assert getattr(loaded, "use_kernels", False) is False
        assert torch.equal(loaded.lm_head.weight, tiny_model().lm_head.weight)
