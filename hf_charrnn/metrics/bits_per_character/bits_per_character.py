"""Bits per character (bpc): the standard score of character-level language models, as an `evaluate` metric.

Load it from the installed package with no Hub access:

    import evaluate
    from hf_charrnn.evaluation import metric_path
    bpc = evaluate.load(metric_path())

This file imports nothing from hf_charrnn, so `evaluate.load` can copy it into its module cache on its own.
"""

import math

import datasets
import evaluate

_CITATION = """\
@article{graves2013generating,
  title={Generating Sequences With Recurrent Neural Networks},
  author={Graves, Alex},
  journal={arXiv preprint arXiv:1308.0850},
  year={2013}
}
"""

_DESCRIPTION = """\
Bits per character (bpc) is the average number of bits a language model needs to encode each character of a text:
the total negative log-likelihood of the text, in nats, divided by ln 2 and by the number of characters.
It compares models whatever their tokenizer: a word-level token covers several characters, so it is the characters
the predicted tokens cover that count, not the tokens. Lower is better; 8 bits would be a uniform guess over 256
symbols, good character models of English reach about 1.1 to 1.5 bpc.

Each example is one scored sequence (a document, a chunk, or a whole stream): its summed negative log-likelihood in
nats and the number of characters its predicted tokens cover. Sums are added over all examples before dividing, so
long sequences weigh more than short ones, as they should.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): for each scored sequence, the SUM of the negative log-likelihoods of its
        predicted tokens, in nats (natural log), e.g. `F.cross_entropy(logits, targets, reduction="sum")`.
    references (`list` of `int`): for each sequence, the number of characters its predicted tokens cover.
        With hf_charrnn's character tokenizer that is the number of predicted tokens; an `<eos>` counts as one
        character (the document boundary it stands for).
    token_counts (`list` of `int`, *optional*): for each sequence, the number of predicted tokens; needed for the
        per-token `loss` and `perplexity` of a word-level model. Defaults to `references` (one token per character).

Returns:
    bpc (`float`): total nats / ln(2) / total characters.
    nats_per_character (`float`): total nats / total characters.
    character_perplexity (`float`): 2 ** bpc.
    loss (`float`): total nats / total tokens (the mean cross-entropy a training loop reports).
    perplexity (`float`): exp(loss), the per-token perplexity.
    characters (`int`), tokens (`int`): the totals.

Examples:
    >>> import evaluate, math
    >>> metric = evaluate.load("path/to/bits_per_character")
    >>> result = metric.compute(predictions=[10 * math.log(2)], references=[10])
    >>> round(result["bpc"], 6)
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BitsPerCharacter(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://arxiv.org/abs/1308.0850"],
        )

    def _compute(self, predictions, references, token_counts=None):
        if len(predictions) == 0:
            raise ValueError("bits_per_character needs at least one scored sequence.")
        if token_counts is not None and len(token_counts) != len(predictions):
            raise ValueError(
                f"token_counts has {len(token_counts)} entries but there are {len(predictions)} predictions; "
                "give one token count per scored sequence."
            )
        for nats in predictions:
            if not (nats >= 0.0) or math.isinf(nats):
                raise ValueError(
                    f"predictions must be summed negative log-likelihoods in nats (finite, >= 0); got {nats}."
                )
        if any(count < 0 for count in references):
            raise ValueError("references must be character counts (>= 0).")
        total_nats = float(sum(predictions))
        characters = int(sum(references))
        tokens = int(sum(token_counts)) if token_counts is not None else characters
        if characters == 0 or tokens == 0:
            raise ValueError("The scored sequences cover no characters (or no tokens): nothing to average over.")
        nats_per_character = total_nats / characters
        bpc = nats_per_character / math.log(2)
        loss = total_nats / tokens
        return {
            "bpc": bpc,
            "nats_per_character": nats_per_character,
            "character_perplexity": 2.0**bpc,
            "loss": loss,
            "perplexity": math.exp(loss) if loss < 700 else float("inf"),
            "characters": characters,
            "tokens": tokens,
        }
