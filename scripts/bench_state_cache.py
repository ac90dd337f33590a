"""Could transformers' own recurrent-state cache layers carry a CharRNN's state? The measurement behind the answer.

transformers ships `LinearAttentionLayer` (cache_utils), which Mamba uses through `get_recurrent_state` /
`update_recurrent_state`. This prints, for the installed release, what such a cache offers that generate() and
CharRNN rely on (tokens consumed: an int up to 5.24, a tensor from 5.25; repeating rows; the `is_linear` flag that
5.24's generate() read before it cut a continued prompt and 5.25's no longer reads; `is_croppable`, True from 5.25,
where the layer keeps a history of states so assisted decoding can rewind), and the cost of one decoding step with
either cache, as a ratio measured in the same run.

    python scripts/bench_state_cache.py [--hidden_size 512] [--num_layers 2] [--steps 2000]
"""

import argparse
import json
import time

import torch
import transformers
from transformers.cache_utils import Cache, LinearAttentionLayer


def linear_attention_cache(num_layers: int) -> Cache:
    return Cache(layers=[LinearAttentionLayer(number_of_states=2) for _ in range(num_layers)])  # states: h, c


def capabilities(num_layers: int, hidden_size: int) -> dict[str, str]:
    cache = linear_attention_cache(num_layers)
    for layer in range(num_layers):
        for state in (0, 1):
            cache.update_recurrent_state(torch.zeros(1, hidden_size), layer, state)
    probes = {
        "get_seq_length": lambda: cache.get_seq_length(),
        "is_linear": lambda: cache.is_linear,
        "is_croppable": lambda: getattr(cache, "is_croppable", "absent"),
        "batch_repeat_interleave": lambda: tuple(cache.batch_repeat_interleave(2) or cache.layers[0].recurrent_states[0].shape),
    }
    found = {}
    for name, probe in probes.items():
        try:
            found[name] = repr(probe())
        except Exception as error:  # noqa: BLE001 - what fails is the finding
            found[name] = f"{type(error).__name__}: {str(error)[:120]}"
    return found


def decode_step_timers(lstm: torch.nn.LSTM, batch_size: int):
    """Two decoding loops over the same cell kernels that differ only in where the state lives between steps."""
    layers, hidden = lstm.num_layers, lstm.hidden_size
    weights = [tuple(getattr(lstm, f"{kind}_l{layer}") for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
               for layer in range(layers)]
    x = torch.randn(batch_size, hidden)

    @torch.no_grad()
    def charrnn_cache(steps: int) -> None:  # CharRNNCache: stacked (layers, batch, hidden) tensors, swapped by reference
        state = (torch.zeros(layers, batch_size, hidden), torch.zeros(layers, batch_size, hidden))
        for _ in range(steps):
            layer_input, hs, cs = x, [], []
            for layer in range(layers):
                h, c = torch.lstm_cell(layer_input, (state[0][layer], state[1][layer]), *weights[layer])
                hs.append(h), cs.append(c)
                layer_input = h
            state = (torch.stack(hs), torch.stack(cs))

    @torch.no_grad()
    def transformers_cache(steps: int) -> None:  # per-layer get/update_recurrent_state, copied into static buffers
        cache = linear_attention_cache(layers)
        for layer in range(layers):
            for state in (0, 1):
                cache.update_recurrent_state(torch.zeros(batch_size, hidden), layer, state)
            cache.layers[layer].has_previous_state = {0: True, 1: True}
        for _ in range(steps):
            layer_input = x
            for layer in range(layers):
                previous = (cache.get_recurrent_state(layer, 0), cache.get_recurrent_state(layer, 1))
                h, c = torch.lstm_cell(layer_input, previous, *weights[layer])
                cache.update_recurrent_state(h, layer, 0), cache.update_recurrent_state(c, layer, 1)
                layer_input = h

    return charrnn_cache, transformers_cache


def microseconds_per_step(loops, steps: int, repeats: int = 7) -> list[float]:
    """The best of `repeats` timings of each loop, run in turns so that both see the same machine load."""
    for loop in loops:
        loop(steps // 10)  # warm-up
    best = [float("inf")] * len(loops)
    for _ in range(repeats):
        for index, loop in enumerate(loops):
            start = time.perf_counter()
            loop(steps)
            best[index] = min(best[index], (time.perf_counter() - start) / steps * 1e6)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden_size", type=int, default=512)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lstm = torch.nn.LSTM(args.hidden_size, args.hidden_size, num_layers=args.num_layers)
    charrnn_cache, transformers_cache = decode_step_timers(lstm, args.batch_size)
    ours, theirs = microseconds_per_step([charrnn_cache, transformers_cache], args.steps)
    print(json.dumps({
        "transformers": transformers.__version__,
        "linear_attention_cache_offers": capabilities(args.num_layers, args.hidden_size),
        "decode_step_us": {"CharRNNCache": round(ours, 1), "LinearAttentionLayer": round(theirs, 1)},
        "LinearAttentionLayer_time_ratio": round(theirs / ours, 3),
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
