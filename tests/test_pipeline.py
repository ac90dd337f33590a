"""The model with its character tokenizer: pipelines, streamers, padded text batches and very long prompts."""

import json
import subprocess
import sys
import textwrap
import threading

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer, TextStreamer, pipeline, set_seed

from testing_utils import tiny_model
from hf_charrnn.tokenization_charrnn import build_char_tokenizer

CORPUS = "The quick brown fox jumps over the lazy dog.\nPack my box with five dozen liquor jugs!\n\tÉté, naïve\r\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny model saved with its tokenizer, as training leaves it."""
    tokenizer = build_char_tokenizer([CORPUS])
    model = tiny_model(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("checkpoint")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_text_generation_pipeline_greedy_matches_generate(checkpoint):
    generator = pipeline("text-generation", model=str(checkpoint))
    result = generator("The quick", do_sample=False, max_new_tokens=15)[0]["generated_text"]
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    ids = model.generate(**tokenizer("The quick", return_tensors="pt"), do_sample=False, max_new_tokens=15)
    assert result == tokenizer.decode(ids[0], skip_special_tokens=True)
    assert result.startswith("The quick")


def test_pipeline_batches_prompts_of_unequal_length_exactly(checkpoint):
    generator = pipeline("text-generation", model=str(checkpoint))
    prompts = ["Pack my box", "fox", "Été, naïve and the lazy"]
    batched = generator(prompts, do_sample=False, max_new_tokens=12, batch_size=3)
    alone = [generator(prompt, do_sample=False, max_new_tokens=12)[0] for prompt in prompts]
    assert [b[0]["generated_text"] for b in batched] == [a["generated_text"] for a in alone]


def test_pipeline_samples_reproducibly_with_a_seed(checkpoint):
    generator = pipeline("text-generation", model=str(checkpoint))
    texts = []
    for _ in range(2):
        set_seed(3)
        texts.append(generator("Pack", max_new_tokens=30, num_return_sequences=2))
    assert texts[0] == texts[1]


def test_streamers_print_exactly_the_generated_text(checkpoint, capsys):
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    inputs = tokenizer("The lazy", return_tensors="pt")
    expected = tokenizer.decode(model.generate(**inputs, do_sample=False, max_new_tokens=20)[0, 8:],
                                skip_special_tokens=True)

    model.generate(**inputs, do_sample=False, max_new_tokens=20, streamer=TextStreamer(tokenizer, skip_prompt=True,
                                                                                      skip_special_tokens=True))
    assert capsys.readouterr().out.rstrip("\n") == expected.rstrip("\n")

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    worker = threading.Thread(target=model.generate,
                              kwargs=dict(**inputs, do_sample=False, max_new_tokens=20, streamer=streamer))
    worker.start()
    pieces = list(streamer)
    worker.join()
    assert "".join(pieces) == expected


def test_unknown_characters_in_a_prompt_are_read_as_unk_and_generation_goes_on(checkpoint):
    prompt = "Zebra ☃ 𝄞"  # Z, ☃ and 𝄞 are not in CORPUS
    text = pipeline("text-generation", model=str(checkpoint))(prompt, do_sample=False, max_new_tokens=5)[0][
        "generated_text"]
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    encoded = tokenizer(prompt, return_tensors="pt")
    assert encoded["input_ids"][0].tolist().count(tokenizer.unk_token_id) == 3
    ids = AutoModelForCausalLM.from_pretrained(checkpoint).generate(**encoded, do_sample=False, max_new_tokens=5)
    assert text == prompt + tokenizer.decode(ids[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True)


# The model's memory for a 1,000,000-token prompt, measured in a fresh process from token ids prepared beforehand:
# tokenizing the text is the tokenizers library's cost (about 380 MB of per-token encodings here), not the model's.
LONG_PROMPT_PEAK_RSS = textwrap.dedent(
    """
    import json, resource, sys, torch
    from hf_charrnn import CharRNNConfig, CharRNNForCausalLM

    input_ids = torch.load(sys.argv[1], weights_only=True)
    model = CharRNNForCausalLM(CharRNNConfig(vocab_size=int(sys.argv[2]), hidden_size=128)).eval()  # 2x128 LSTM
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False, max_new_tokens=5)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_mb": (after - before) / 1024, "length": output.shape[1]}))
    """
)


@pytest.mark.slow
def test_a_million_character_prompt_runs_in_bounded_memory(tmp_path):
    alphabet = "abcdefghijklmnopqrstuvwxyz ,.;:!?\n'ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    generator = torch.Generator().manual_seed(0)
    prompt = "".join(alphabet[i] for i in torch.randint(0, len(alphabet), (1_000_000,), generator=generator).tolist())
    tokenizer = build_char_tokenizer([alphabet])
    torch.save(tokenizer(prompt, return_tensors="pt")["input_ids"], tmp_path / "ids.pt")
    result = subprocess.run([sys.executable, "-c", LONG_PROMPT_PEAK_RSS, str(tmp_path / "ids.pt"), str(len(tokenizer))],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["length"] == 1_000_005
    # Bounded: the whole prompt at once would hold 1M x 128 floats per layer (512 MB) for the outputs alone, and four
    # times that for the gates.
    assert figures["growth_mb"] < 150, figures
