"""What asking for every layer's outputs costs, and that the fast paths do not pay it when nobody asks.

    python scripts/bench_forward_paths.py [--device cuda] [--repeats 7]

The same 2-layer LSTM weights, eval mode, no gradients, on the current device. Each row times one forward call (the
median of `--repeats`) and prints its ratio to the reference measured in the same run:
- sequence: batch 32 x 256 tokens, no padding; reference: the plain-torch `Embedding -> nn.LSTM -> Linear`;
- padded:   the same batch left-padded (a quarter of each row); reference: the plain-torch call on the unpadded batch;
- decode:   100 single-token steps carrying the state, batch 1; reference: a stateful one-step `nn.LSTM` loop.
For each, `model(...)` is timed without and with `output_hidden_states=True`. Without, the ratio is the one the
model had before hidden states existed (the fused kernels and the cell-kernel step are unchanged); with, the stack
runs one layer at a time.
"""

import argparse
import json
import statistics
import time

import torch

from bench_generate import plain_torch_copy
from hf_charrnn.configuration_charrnn import CharRNNConfig
from hf_charrnn.modeling_charrnn import CharRNNCache, CharRNNForCausalLM

BATCH, LENGTH, DECODE_STEPS = 32, 256, 100


def median_seconds(function, repeats: int, device: torch.device) -> float:
    """Median wall time of `function()` over `repeats` runs, after one warm-up run."""
    times = []
    for attempt in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if attempt:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def decode_with_model(model, token, hidden_states: bool) -> None:
    cache = CharRNNCache.zeros(model.config, 1, device=token.device)
    for _ in range(DECODE_STEPS):
        model(token, cache=cache, use_cache=True, output_hidden_states=hidden_states)


def decode_with_plain_lstm(embedding, lstm, head, token) -> None:
    state = None
    for _ in range(DECODE_STEPS):
        output, state = lstm(embedding(token), state)
        head(output)


def measure(device: torch.device, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    config = CharRNNConfig(vocab_size=80, hidden_size=256, num_layers=2, embedding_dim=64)
    model = CharRNNForCausalLM(config).to(device).eval()
    embedding, lstm, head = (module.to(device) for module in plain_torch_copy(model))
    ids = torch.randint(0, config.vocab_size, (BATCH, LENGTH), device=device)
    mask = torch.ones_like(ids)
    mask[:, : LENGTH // 4] = 0
    token = ids[:1, :1]
    plain_sequence = median_seconds(lambda: head(lstm(embedding(ids))[0]), repeats, device)
    plain_decode = median_seconds(lambda: decode_with_plain_lstm(embedding, lstm, head, token), repeats, device)
    rows = []
    for hidden_states in (False, True):
        cases = {
            "sequence": (lambda: model(ids, output_hidden_states=hidden_states), plain_sequence),
            "padded": (lambda: model(ids, attention_mask=mask, output_hidden_states=hidden_states), plain_sequence),
            "decode": (lambda: decode_with_model(model, token, hidden_states), plain_decode),
        }
        for name, (function, reference) in cases.items():
            seconds = median_seconds(function, repeats, device)
            rows.append({"path": name, "output_hidden_states": hidden_states, "ms": round(seconds * 1e3, 2),
                         "reference_ms": round(reference * 1e3, 2),
                         "ratio_to_reference": round(seconds / reference, 3)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with torch.no_grad():
        rows = measure(torch.device(args.device), args.repeats)
    for row in rows:
        print(f"{row['path']:<9} hidden_states={row['output_hidden_states']!s:<5} {row['ms']:>9.2f} ms   "
              f"reference {row['reference_ms']:>9.2f} ms   ratio {row['ratio_to_reference']:.3f}")
    print(json.dumps({"device": args.device, "rows": rows}))


if __name__ == "__main__":
    main()
