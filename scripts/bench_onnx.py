"""Decoding speed of the exported ONNX graphs (onnxruntime + numpy) against `model.generate()`, same weights.

    python scripts/bench_onnx.py [--tokens 1000] [--hidden_size 512] [--threads 2]

Exports a freshly initialised 2-layer LSTM (80 characters, the default 512 units) with `hf_charrnn.export`, then
produces `--tokens` tokens at batch 1 four ways and prints tokens per second and the ratio of each ONNX loop to the
matching `generate()` call, measured in the same run:
- greedy: `generate(do_sample=False)` vs an argmax loop over `decode_step.onnx`;
- sampled: `generate(do_sample=True, temperature=0.8, top_k=0)` vs a numpy softmax-and-choice loop;
and the prompt pass: a 4,000-character prompt through `prompt.onnx` vs the model's forward (chunked, no gradients).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from hf_charrnn.configuration_charrnn import CharRNNConfig
from hf_charrnn.export import export_onnx
from hf_charrnn.modeling_charrnn import CharRNNForCausalLM
from hf_charrnn.tokenization_charrnn import build_char_tokenizer

PROMPT_LENGTH = 4000


def onnx_loop(session, state: dict, first_token: int, tokens: int, sample: bool, seed: int = 0) -> float:
    """Seconds to produce `tokens` tokens with the decode-step graph, greedy or sampled at temperature 0.8."""
    rng, token = np.random.default_rng(seed), first_token
    started = time.perf_counter()
    for _ in range(tokens):
        logits, *new_state = session.run(None, {"input_ids": np.array([[token]]), **state})
        state = dict(zip(state, new_state))
        if sample:
            probabilities = np.exp((logits[0] - logits[0].max()) / 0.8)
            token = rng.choice(len(probabilities), p=probabilities / probabilities.sum())
        else:
            token = int(logits[0].argmax())
    return time.perf_counter() - started


def generate_seconds(model, tokens: int, sample: bool) -> float:
    ids = torch.tensor([[5]])
    options = dict(do_sample=True, temperature=0.8, top_k=0) if sample else dict(do_sample=False)
    started = time.perf_counter()
    model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, min_new_tokens=tokens, **options)
    return time.perf_counter() - started


def prompt_seconds(model, folder: Path) -> tuple[float, float]:
    """A PROMPT_LENGTH-token prompt: onnxruntime's prompt graph, then the model's forward, in seconds."""
    ids = torch.randint(0, model.config.vocab_size, (1, PROMPT_LENGTH), generator=torch.Generator().manual_seed(0))
    zeros = np.zeros((model.config.num_layers, 1, model.config.hidden_size), np.float32)
    session = onnxruntime.InferenceSession(str(folder / "prompt.onnx"), providers=["CPUExecutionProvider"])
    session.run(None, {"input_ids": ids[:, :16].numpy(), "hidden": zeros, "cell": zeros})  # warm-up
    started = time.perf_counter()
    session.run(None, {"input_ids": ids.numpy(), "hidden": zeros, "cell": zeros})
    onnx_time = time.perf_counter() - started
    with torch.no_grad():
        model(ids[:, :16], logits_to_keep=1)
        started = time.perf_counter()
        model(ids, logits_to_keep=1)
    return onnx_time, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--hidden_size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = build_char_tokenizer(["".join(chr(32 + i) for i in range(76))])
    config = CharRNNConfig(vocab_size=len(tokenizer), hidden_size=args.hidden_size, num_layers=2, eos_token_id=None)
    model = CharRNNForCausalLM(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        export_onnx(model, tokenizer, folder)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = onnxruntime.InferenceSession(str(Path(folder) / "decode_step.onnx"), options,
                                               providers=["CPUExecutionProvider"])
        zeros = np.zeros((config.num_layers, 1, config.hidden_size), np.float32)
        onnx_loop(session, {"hidden": zeros, "cell": zeros}, 5, 20, sample=False)  # warm-up
        generate_seconds(model, 20, sample=False)
        rows = {}
        for mode, sample in (("greedy", False), ("sampled", True)):
            onnx_time = onnx_loop(session, {"hidden": zeros, "cell": zeros}, 5, args.tokens, sample)
            torch_time = generate_seconds(model, args.tokens, sample)
            rows[mode] = {"onnx_tokens_per_s": round(args.tokens / onnx_time), "generate_tokens_per_s":
                          round(args.tokens / torch_time), "onnx_speedup": round(torch_time / onnx_time, 2)}
        onnx_prompt, torch_prompt = prompt_seconds(model, Path(folder))
    rows["prompt"] = {"tokens": PROMPT_LENGTH, "onnx_ms": round(onnx_prompt * 1e3, 1),
                      "forward_ms": round(torch_prompt * 1e3, 1), "onnx_speedup": round(torch_prompt / onnx_prompt, 2)}
    for mode, row in rows.items():
        print(f"{mode:<8} {row}")
    print(json.dumps({"hidden_size": args.hidden_size, "tokens": args.tokens, "threads": args.threads, **rows}))


if __name__ == "__main__":
    main()
