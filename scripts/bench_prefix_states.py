"""Prime once, sample many: the time to draw N continuations of one long prompt, reading the prompt once
(`hf_charrnn.states.prime` + `continue_from`, what `hf-charrnn generate --num_samples N` does) against generate()'s
own way (the prompt copied N times and read as a batch), and from a state saved to disk and loaded again.

    python scripts/bench_prefix_states.py [--prompt_chars 20000] [--samples 8] [--new_tokens 100] [--hidden_size 512]

Prints JSON: seconds for each way, the ratio, and whether the tokens are identical (same seed, same tokens).
"""

import argparse
import json
import tempfile
from pathlib import Path

import torch
from transformers import set_seed

from hf_charrnn.configuration_charrnn import CharRNNConfig
from hf_charrnn.modeling_charrnn import CharRNNForCausalLM
from hf_charrnn.states import continue_from, load_state, prime, save_state

from bench_common import timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompt_chars", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--new_tokens", type=int, default=100)
    parser.add_argument("--hidden_size", type=int, default=512)
    parser.add_argument("--num_layers", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    config = CharRNNConfig(vocab_size=96, hidden_size=args.hidden_size, num_layers=args.num_layers, eos_token_id=None)
    model = CharRNNForCausalLM(config).eval()
    prompt = torch.randint(4, 96, (1, args.prompt_chars))
    options = dict(do_sample=True, max_new_tokens=args.new_tokens, num_return_sequences=args.samples)
    with torch.no_grad():
        set_seed(1)
        plain, plain_s = timed(lambda: model.generate(prompt, attention_mask=torch.ones_like(prompt), **options))
        state, prime_s = timed(lambda: prime(model, prompt))
        set_seed(1)
        primed, continue_s = timed(lambda: continue_from(model, state, **options))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "state.safetensors"
            _, save_s = timed(lambda: save_state(path, model, state))
            loaded, load_s = timed(lambda: load_state(path, model))
            size = path.stat().st_size
        set_seed(1)
        reloaded, reloaded_s = timed(lambda: continue_from(model, loaded, **options))
    print(json.dumps({
        "prompt_chars": args.prompt_chars, "samples": args.samples, "new_tokens": args.new_tokens,
        "model": f"{args.num_layers}x{args.hidden_size} LSTM",
        "generate_prompt_per_sample_s": round(plain_s, 3),
        "prime_once_s": round(prime_s, 3), "continue_s": round(continue_s, 3),
        "prime_once_total_s": round(prime_s + continue_s, 3),
        "speedup": round(plain_s / (prime_s + continue_s), 2),
        "state_file_bytes": size, "save_s": round(save_s, 3), "load_s": round(load_s, 3),
        "from_loaded_state_s": round(reloaded_s, 3),
        # the new tokens (a loaded state's output starts at the prompt's last token, not at its first)
        "same_tokens": bool(torch.equal(plain, primed) and torch.equal(plain[:, -args.new_tokens:],
                                                                      reloaded[:, -args.new_tokens:])),
    }, indent=2))


if __name__ == "__main__":
    main()
