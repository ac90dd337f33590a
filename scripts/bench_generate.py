"""Characters per second of model.generate() against a stateful nn.LSTM loop and the re-run-the-window tutorial loop.

    python scripts/bench_generate.py [--lengths 1000 4000] [--repeats 5] [--device cuda]

Four ways to sample N characters from the same 2-layer LSTM weights, batch 1, on the current device:
(a) `model.generate(do_sample=True)`, which carries a `CharRNNCache` and takes the model's fused decoding step;
(b) a hand-written stateful loop calling a plain `nn.LSTM` one token at a time (what a careful user writes);
(c) the classic tutorial loop that re-runs the last `window` characters from a zero state for every new character;
(d) the limit: a plain-torch loop doing only the unavoidable work per token (one matrix-vector product per layer over
    the concatenated input and state, the gates, the output layer, sampling), with weights prepared beforehand.
`generate_vs_fused_step_limit` is (a)'s speed over (d)'s, the median over rounds that run them back to back (the
machine's pace drifts between rounds; `..._per_round` lists them all).
"""

import json
import statistics
import time

import torch
from torch import nn

from hf_charrnn.configuration_charrnn import CharRNNConfig
from hf_charrnn.modeling_charrnn import CharRNNForCausalLM


def plain_torch_copy(model: CharRNNForCausalLM) -> tuple[nn.Embedding, nn.LSTM, nn.Linear]:
    """The model's weights in plain torch modules, as a tutorial would build them."""
    config = model.config
    embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
    embedding.load_state_dict(model.model.embeddings.state_dict())
    lstm = nn.LSTM(config.embedding_dim, config.hidden_size, config.num_layers, batch_first=True)
    lstm.load_state_dict(model.model.rnn.state_dict())
    head = nn.Linear(config.hidden_size, config.vocab_size)
    head.load_state_dict(model.lm_head.state_dict())
    return embedding.eval(), lstm.eval(), head.eval()


@torch.no_grad()
def sample_with_generate(model, prompt: torch.Tensor, num_chars: int) -> torch.Tensor:
    return model.generate(prompt, do_sample=True, temperature=1.0, top_k=0, max_new_tokens=num_chars,
                          min_new_tokens=num_chars)


@torch.no_grad()
def sample_stateful_nn_lstm(modules, prompt: torch.Tensor, num_chars: int) -> torch.Tensor:
    embedding, lstm, head = modules
    output, state = lstm(embedding(prompt))
    tokens = [prompt]
    for _ in range(num_chars):
        probabilities = torch.softmax(head(output[:, -1]), dim=-1)
        next_token = torch.multinomial(probabilities, 1)
        tokens.append(next_token)
        output, state = lstm(embedding(next_token), state)
    return torch.cat(tokens, dim=1)


@torch.no_grad()
def sample_rerunning_window(modules, prompt: torch.Tensor, num_chars: int, window: int = 100) -> torch.Tensor:
    embedding, lstm, head = modules
    tokens = prompt
    for _ in range(num_chars):
        output, _ = lstm(embedding(tokens[:, -window:]))
        probabilities = torch.softmax(head(output[:, -1]), dim=-1)
        tokens = torch.cat([tokens, torch.multinomial(probabilities, 1)], dim=1)
    return tokens


def fused_weights(lstm: nn.LSTM) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer: [W_ih | W_hh] and b_ih + b_hh, so a step is one matrix product over [x, h]."""
    return [(torch.cat([w_ih, w_hh], dim=1).t().contiguous(), b_ih + b_hh) for w_ih, w_hh, b_ih, b_hh in lstm.all_weights]


@torch.no_grad()
def sample_fused_step_limit(modules, prompt: torch.Tensor, num_chars: int) -> torch.Tensor:
    embedding, lstm, head = modules
    weights = fused_weights(lstm)
    output, (hidden, cell) = lstm(embedding(prompt))  # the prompt: the same fused kernel every sampler uses
    hidden, cell = list(hidden.unbind(0)), list(cell.unbind(0))
    x, tokens = output[:, -1], [prompt]
    for _ in range(num_chars):
        next_token = torch.multinomial(torch.softmax(head(x), dim=-1), 1)
        tokens.append(next_token)
        x = embedding(next_token)[:, 0]
        for layer, (weight, bias) in enumerate(weights):
            gates = torch.addmm(bias, torch.cat([x, hidden[layer]], dim=1), weight)
            i, f, g, o = gates.chunk(4, dim=1)
            cell[layer] = torch.sigmoid(f) * cell[layer] + torch.sigmoid(i) * torch.tanh(g)
            x = hidden[layer] = torch.sigmoid(o) * torch.tanh(cell[layer])
    return torch.cat(tokens, dim=1)


def timed_rounds(samplers: dict, num_chars: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of `repeats` timed runs of each sampler (of `rounds`, where given), the samplers taking turns within
    each round, so that a slow spell of the machine falls on all of them rather than on one."""
    seconds = {name: [] for name in samplers}
    for round_index in range(repeats):
        for name, (sampler, args, rounds) in samplers.items():
            if rounds is not None and round_index >= rounds:
                continue
            start = time.perf_counter()
            tokens = sampler(*args, num_chars)
            seconds[name].append(time.perf_counter() - start)
            assert tokens.shape[1] >= num_chars, f"{name} stopped early"
    return seconds


def round_speed_ratios(seconds: dict[str, list[float]], name: str, reference: str) -> list[float]:
    """How fast `name` ran against `reference` in each round both ran in: the reference's time over its time."""
    return [ref / own for own, ref in zip(seconds[name], seconds[reference])]


def paired_speed_ratio(seconds: dict[str, list[float]], name: str, reference: str) -> float:
    """The median of `round_speed_ratios`. Each round runs the two back to back, so the machine's pace, which drifts
    by tens of percent over a benchmark on a shared machine, cancels out; a ratio of best times would pair a fast
    spell with a slow one."""
    return statistics.median(round_speed_ratios(seconds, name, reference))


def run_generation_benchmark(lengths=(1000, 4000), hidden_size=512, num_layers=2, vocab_size=100,
                             window=100, repeats=3, device="cpu") -> dict:
    """Measure (a), (b), (c), (d) for each length; returns the figures (chars/s from each sampler's best run) and the
    ratios the targets are stated in (paired, `paired_speed_ratio`; against the one run of (c), best over best)."""
    torch.manual_seed(0)
    config = CharRNNConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers, eos_token_id=None)
    model = CharRNNForCausalLM(config).to(device).eval()
    modules = tuple(module.to(device) for module in plain_torch_copy(model))
    prompt = torch.randint(4, vocab_size, (1, window), device=device)
    sample_with_generate(model, prompt, 20)  # warm-up
    sample_stateful_nn_lstm(modules, prompt, 20)
    sample_fused_step_limit(modules, prompt, 20)

    results = {"device": device, "model": f"{num_layers}x{hidden_size} LSTM, vocab {vocab_size}", "batch_size": 1,
               "threads": torch.get_num_threads(), "repeats": repeats, "lengths": {}}
    for length in lengths:
        seconds = timed_rounds({
            "generate": (sample_with_generate, (model, prompt), None),
            "stateful": (sample_stateful_nn_lstm, (modules, prompt), None),
            "limit": (sample_fused_step_limit, (modules, prompt), None),
            "window": (sample_rerunning_window, (modules, prompt), 1),  # slow, and far behind: one run
        }, length, repeats)
        rate = {name: length / min(times) for name, times in seconds.items()}
        results["lengths"][str(length)] = {
            "generate_chars_per_s": round(rate["generate"], 1),
            "generate_seconds": round(min(seconds["generate"]), 3),
            "stateful_nn_lstm_chars_per_s": round(rate["stateful"], 1),
            "rerun_window_chars_per_s": round(rate["window"], 1),
            "fused_step_limit_chars_per_s": round(rate["limit"], 1),
            "generate_vs_stateful_nn_lstm": round(paired_speed_ratio(seconds, "generate", "stateful"), 2),
            "generate_vs_rerun_window": round(rate["generate"] / rate["window"], 2),
            "generate_vs_fused_step_limit": round(paired_speed_ratio(seconds, "generate", "limit"), 2),
            "generate_vs_fused_step_limit_per_round": [
                round(ratio, 2) for ratio in round_speed_ratios(seconds, "generate", "limit")],
        }
    if len(lengths) >= 2:
        short, long = (results["lengths"][str(n)]["generate_seconds"] for n in (lengths[0], lengths[-1]))
        results[f"generate_time_{lengths[-1]}_over_{lengths[0]}"] = round(long / short, 2)
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Characters per second of model.generate() against plain loops.")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--hidden_size", type=int, default=512)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed rounds per length: chars/s from each sampler's best, ratios the median of the rounds")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    results = run_generation_benchmark(lengths=tuple(args.lengths), hidden_size=args.hidden_size,
                                       num_layers=args.num_layers, repeats=args.repeats, device=args.device)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
