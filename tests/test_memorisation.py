"""The memorisation report against a brute-force reference: the longest span of each sample found in the training
text, and the characters inside copied spans of at least 20 characters."""

import random

import pytest

from hf_charrnn.memorisation import MIN_COPIED_SPAN, bounded_training_text, memorisation_report


def brute_force(samples, text, min_span):
    """Every position's longest copy by plain substring search, then the same two figures."""
    longest, covered_total = 0, 0
    for sample in samples:
        covered = [False] * len(sample)
        for start in range(len(sample)):
            length = 0
            while start + length < len(sample) and sample[start : start + length + 1] in text:
                length += 1
            longest = max(longest, length)
            if length >= min_span:
                covered[start : start + length] = [True] * length
        covered_total += sum(covered)
    return longest, covered_total / sum(len(sample) for sample in samples)


def random_text(rng, length, alphabet="abcdefgh \n"):
    return "".join(rng.choice(alphabet) for _ in range(length))


@pytest.mark.parametrize("seed", range(6))
def test_the_report_equals_a_brute_force_search(seed):
    rng = random.Random(seed)
    text = random_text(rng, 3000)
    samples = []
    for _ in range(3):  # random text with copies of the training text of assorted lengths spliced in
        pieces = []
        for _ in range(4):
            start, length = rng.randrange(0, 2900), rng.choice([5, 12, 19, 20, 21, 37, 80])
            pieces += [random_text(rng, rng.randrange(0, 30)), text[start : start + length]]
        samples.append("".join(pieces))
    report = memorisation_report(samples, text)
    longest, share = brute_force(samples, text, MIN_COPIED_SPAN)
    assert report["longest_copied_span"] == longest
    assert report["copied_share"] == pytest.approx(share)
    assert report["longest_copied_text"] in text and len(report["longest_copied_text"]) in (longest, 0)


def test_without_a_long_copy_the_longest_short_one_is_exact():
    text = "the quick brown fox jumps over the lazy dog"
    samples = ["a quick brow cat", "lazy do"]
    report = memorisation_report(samples, text)
    assert report["longest_copied_span"] == brute_force(samples, text, 20)[0] == len(" quick brow")
    assert report["copied_share"] == 0 and report["longest_copied_text"] == ""


def test_a_verbatim_sample_is_all_copied_and_separators_are_never_crossed():
    text, whole = bounded_training_text(["alpha beta gamma delta epsilon\n", "zeta eta theta iota kappa\n"])
    assert whole and len(text) == 57 + 1
    assert bounded_training_text(["abc", "defg", "hij"], limit=5) == ("abc\0de", False)  # reading stops there
    copied = memorisation_report(["beta gamma delta epsilon"], text)
    assert copied["copied_share"] == 1 and copied["longest_copied_span"] == 24
    across = memorisation_report(["epsilon\nzeta eta theta"], text)  # the two rows are not one text
    assert across["longest_copied_span"] == len("zeta eta theta")


def test_a_quotation_of_the_embedded_corpus_is_found():
    from hf_charrnn.shakespeare import load_shakespeare

    text, whole = bounded_training_text(row["text"] for row in load_shakespeare()["train"])
    quoted = text[100_000:100_300]  # a sample that quotes 300 characters of the plays, and one that quotes nothing
    report = memorisation_report([quoted, "Zzyzx qwv!" * 30], text)
    assert report["longest_copied_span"] >= 300 and report["copied_share"] == pytest.approx(0.5)
    assert report["indexed_characters"] == len(text) > 4_000_000 and whole and report["whole_training_text"]


def test_the_training_run_report_samples_reproducibly_without_touching_the_global_random_state():
    import torch

    from testing_utils import tiny_model
    from hf_charrnn.memorisation import REPORT_SAMPLES, seeded_samples, training_run_report
    from hf_charrnn.tokenization_charrnn import build_char_tokenizer

    text = "the cat sat on the mat. the dog sat on the log.\n" * 30
    tokenizer = build_char_tokenizer([text])
    model = tiny_model(vocab_size=len(tokenizer))
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    report = training_run_report(model, tokenizer, [text], seed=9)
    assert torch.equal(torch.rand(3), expected_next)  # the training run's random stream is left as it was
    samples = seeded_samples(model, tokenizer, REPORT_SAMPLES, 300, seed=9)
    assert len(samples) == REPORT_SAMPLES and samples == seeded_samples(model, tokenizer, REPORT_SAMPLES, 300, seed=9)
    assert report == {**memorisation_report(samples, text), "seed": 9}
