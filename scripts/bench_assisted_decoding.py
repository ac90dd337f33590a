"""Would prompt-lookup decoding make greedy generation of a char-RNN faster? The measurement behind refusing it.

    python scripts/bench_assisted_decoding.py [--train_steps 400] [--new_tokens 400] [--draft_tokens 10] [--repeats 5]

Prompt-lookup decoding (`generate(prompt_lookup_num_tokens=K)`, and assisted decoding in general) drafts K tokens,
runs the model over them in one call, keeps the longest prefix greedy decoding agrees with and rewinds the rest. A
transformer scores the K drafts in parallel; a recurrent model still steps through them one after the other, and to
rewind it must restore the state it had after the last accepted token. The most it can win is the per-token overhead
of a decoding call, on text where drafts are often right. This script measures that best case, on the text that
favours it most: a list of names that repeat (the speakers of the embedded plays in order, one per line), with a
model trained on the first 80 % for `--train_steps` steps and prompted with the start of the rest.

Four ways to decode the same `--new_tokens` greedy tokens, batch 1, timed in paired rounds (median ratio):
(a) `model.generate(do_sample=False)`: what users run;
(b) a plain loop: one `model(...)` call per token, carrying the cache (generate()'s work without its bookkeeping);
(c) prompt lookup done as well as a recurrent model can: drafts from the first earlier match of the last
    `--ngram` tokens (as transformers' `PromptLookupCandidateGenerator` finds them), one call over [last token, drafts]
    from a copy of the state, and on a rejection the state recomputed from the copy over the accepted tokens;
(d) (c)'s time less its recomputations: the bound for a free rewind, which no implementation reaches for an LSTM
    (its per-position cell states are not outputs of the fused kernels).
It prints the acceptance rate, how many tokens each way agrees with (a) on, and each way's speed over (a) and (b).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import time

import torch

from bench_common import log
from hf_charrnn.configuration_charrnn import CharRNNConfig
from hf_charrnn.modeling_charrnn import CharRNNForCausalLM
from hf_charrnn.shakespeare import shakespeare_plays

SPEAKER_LINE = re.compile(r"^\*\*([^*]+)\*\*[ \t]*$", re.MULTILINE)


def speaker_list() -> str:
    """The speakers of every embedded play, in order, one per line: a list of names that repeat."""
    return "".join(f"{name.strip()}\n" for path in shakespeare_plays().values()
                   for name in SPEAKER_LINE.findall(path.read_text(encoding="utf-8")))


def train_small_model(text: str, steps: int, hidden_size: int, seed: int = 0):
    """A 2-layer LSTM over the text's characters, trained by a plain Adam loop on random windows."""
    torch.manual_seed(seed)
    vocabulary = sorted(set(text))
    ids = torch.tensor([vocabulary.index(c) for c in text])
    config = CharRNNConfig(vocab_size=len(vocabulary), hidden_size=hidden_size, num_layers=2, embedding_dim=64,
                           pad_token_id=None, unk_token_id=None, bos_token_id=None, eos_token_id=None)
    model = CharRNNForCausalLM(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for step in range(steps):
        starts = torch.randint(0, len(ids) - 129, (32,))
        batch = torch.stack([ids[s : s + 129] for s in starts.tolist()])
        loss = model(batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"  training step {step}: loss {loss.item():.3f} nats")
    return model.eval(), vocabulary


def find_drafts(tokens: list[int], ngram: int, count: int) -> list[int]:
    """Up to `count` tokens that followed the first earlier occurrence of the last `ngram` tokens (shorter n-grams if
    none), as transformers' `PromptLookupCandidateGenerator` drafts them."""
    for size in range(min(ngram, len(tokens) - 1), 0, -1):
        tail = tokens[-size:]
        for start in range(len(tokens) - size):
            if tokens[start : start + size] == tail:
                return tokens[start + size : start + size + count]
    return []


@torch.no_grad()
def with_generate(model, prompt: torch.Tensor, new_tokens: int) -> list[int]:
    output = model.generate(prompt, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    return output[0, prompt.shape[1]:].tolist()


@torch.no_grad()
def with_plain_loop(model, prompt: torch.Tensor, new_tokens: int) -> list[int]:
    output = model(prompt, use_cache=True, logits_to_keep=1)
    cache, produced = output.cache, [int(output.logits[0, -1].argmax())]
    while len(produced) < new_tokens:
        output = model(torch.tensor([[produced[-1]]]), cache=cache, use_cache=True)
        produced.append(int(output.logits[0, -1].argmax()))
    return produced


@torch.no_grad()
def with_prompt_lookup(model, prompt: torch.Tensor, new_tokens: int, ngram: int, draft_tokens: int,
                       rounds: list | None = None, rewinds: list | None = None) -> list[int]:
    """Greedy decoding verified in rounds of drafts (see the module docstring, (c)); `rounds` collects (drafted,
    accepted) per round, `rewinds` the seconds spent recomputing the state after a rejection."""
    output = model(prompt, use_cache=True, logits_to_keep=1)
    cache, history = output.cache, prompt[0].tolist()
    produced = [int(output.logits[0, -1].argmax())]
    while len(produced) < new_tokens:
        drafts = find_drafts(history + produced, ngram, min(draft_tokens, new_tokens - len(produced)))
        before = copy.deepcopy(cache) if drafts else None
        output = model(torch.tensor([[produced[-1], *drafts]]), cache=cache, use_cache=True)
        greedy = output.logits[0].argmax(-1).tolist()
        accepted = 0
        while accepted < len(drafts) and drafts[accepted] == greedy[accepted]:
            accepted += 1
        if accepted < len(drafts):  # rewind: recompute the state over what was kept
            started = time.perf_counter()
            cache = before
            model(torch.tensor([[produced[-1], *drafts[:accepted]]]), cache=cache, use_cache=True, logits_to_keep=1)
            if rewinds is not None:
                rewinds.append(time.perf_counter() - started)
        produced.extend(drafts[:accepted] + [greedy[accepted]])
        if rounds is not None and drafts:
            rounds.append((len(drafts), accepted))
    return produced[:new_tokens]


def agreement(tokens: list[int], reference: list[int]) -> int:
    """How many leading tokens two decodings share."""
    return next((i for i, (a, b) in enumerate(zip(tokens, reference)) if a != b), min(len(tokens), len(reference)))


def run(train_steps=400, hidden_size=256, prompt_chars=2000, new_tokens=400, ngram=2, draft_tokens=10, repeats=5):
    text = speaker_list()
    cut = int(len(text) * 0.8)
    log(f"speaker list: {len(text):,} characters; training a 2x{hidden_size} LSTM for {train_steps} steps")
    model, vocabulary = train_small_model(text[:cut], train_steps, hidden_size)
    held_out = [vocabulary.index(c) if c in vocabulary else 0 for c in text[cut : cut + prompt_chars]]
    prompt = torch.tensor([held_out])
    rounds: list = []
    rewinds: list = []
    ways = {
        "generate": lambda: with_generate(model, prompt, new_tokens),
        "plain_loop": lambda: with_plain_loop(model, prompt, new_tokens),
        "prompt_lookup": lambda: with_prompt_lookup(model, prompt, new_tokens, ngram, draft_tokens, rounds, rewinds),
    }
    tokens = {name: way() for name, way in ways.items()}  # also the warm-up
    seconds = {name: [] for name in [*ways, "prompt_lookup_free_rewind"]}
    for _ in range(repeats):
        for name, way in ways.items():
            rounds.clear()
            rewinds.clear()
            start = time.perf_counter()
            way()
            seconds[name].append(time.perf_counter() - start)
        seconds["prompt_lookup_free_rewind"].append(seconds["prompt_lookup"][-1] - sum(rewinds))  # (d)
    drafted, accepted = sum(d for d, _ in rounds), sum(a for _, a in rounds)

    def speed_over(name, reference):
        return round(statistics.median(r / s for s, r in zip(seconds[name], seconds[reference])), 2)

    return {
        "model": f"2x{hidden_size} LSTM, {train_steps} training steps, vocabulary {len(vocabulary)}",
        "text": "speaker names of the embedded plays, one per line; prompt: the first "
                f"{prompt_chars} held-out characters", "new_tokens": new_tokens, "ngram": ngram,
        "draft_tokens": draft_tokens, "threads": torch.get_num_threads(), "repeats": repeats,
        "sample": "".join(vocabulary[t] for t in tokens["generate"][:120]),
        "draft_acceptance": round(accepted / max(drafted, 1), 3),
        "tokens_per_drafting_round": round(new_tokens / max(len(rounds), 1), 2),
        "tokens_agreeing_with_generate": {name: agreement(t, tokens["generate"]) for name, t in tokens.items()},
        "tokens_per_s": {name: round(new_tokens / statistics.median(s), 1) for name, s in seconds.items()},
        "speed_over_generate": {name: speed_over(name, "generate") for name in seconds},
        "speed_over_plain_loop": {name: speed_over(name, "plain_loop") for name in seconds},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_steps", type=int, default=400)
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--new_tokens", type=int, default=400)
    parser.add_argument("--draft_tokens", type=int, default=10, help="K: drafted tokens per call (prompt_lookup_num_tokens)")
    parser.add_argument("--ngram", type=int, default=2, help="longest n-gram matched (max_matching_ngram_size)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.train_steps, args.hidden_size, new_tokens=args.new_tokens, ngram=args.ngram,
                         draft_tokens=args.draft_tokens, repeats=args.repeats), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
