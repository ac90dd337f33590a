"""`hf-charrnn generate`: sample text from a trained model (folder or Hub id), streamed as it is produced."""

import argparse
import sys

from transformers import set_seed

from ..generate import sample
from ..model_loading import load_model_and_tokenizer


def generation_options(args: argparse.Namespace) -> dict:
    """Only what the user set: the rest comes from the checkpoint's generation_config.json."""
    options = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "num_beams": args.num_beams,
        "num_return_sequences": args.num_samples,
    }
    options = {name: value for name, value in options.items() if value is not None}
    if args.greedy or (args.num_beams and args.num_beams > 1 and args.temperature is None):
        options["do_sample"] = False
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-charrnn generate",
        description="Sample text from a trained CharRNN model. Defaults for everything you leave out come from the "
        "model's generation_config.json (sampling at temperature 0.8 unless the model says otherwise).",
    )
    parser.add_argument("model", help="a folder written by `hf-charrnn train`, or a Hub id such as user/name")
    parser.add_argument("--prompt", help="text to continue; '-' reads it from standard input. "
                        "Without it, or from an empty pipe, sampling starts at a document boundary (the BOS token).")
    parser.add_argument("--max_new_tokens", type=int, help="how many characters (tokens) to add")
    parser.add_argument("--temperature", type=float, help="below 1: safer, more repetitive; above 1: wilder")
    parser.add_argument("--top_k", type=int, help="sample among the k most likely characters only (0: all)")
    parser.add_argument("--top_p", type=float, help="sample among the most likely characters whose "
                        "probabilities add up to p (nucleus sampling)")
    parser.add_argument("--num_beams", type=int, help="beam search with this many beams (greedy unless "
                        "--temperature is given too)")
    parser.add_argument("--num_samples", type=int, help="how many different samples to draw")
    parser.add_argument("--greedy", action="store_true", help="always take the most likely character")
    parser.add_argument("--seed", type=int, help="make sampling reproducible")
    parser.add_argument("--revision", help="Hub branch, tag or commit to load")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--no_stream", action="store_true", help="print only the finished samples")
    return parser


def read_prompt(prompt: str | None) -> str:
    """The prompt text ('' for none: encode_prompt then starts from the BOS token)."""
    return sys.stdin.read() if prompt == "-" else (prompt or "")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seed is not None:
        set_seed(args.seed)
    model, tokenizer = load_model_and_tokenizer(args.model, revision=args.revision, device=args.device)
    texts = sample(model, tokenizer, read_prompt(args.prompt), stream=not args.no_stream,
                   **generation_options(args))
    if args.no_stream:
        print("\n\n".join(texts))
    return 0
