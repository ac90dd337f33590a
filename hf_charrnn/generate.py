"""`hf-charrnn generate`: sample text from a trained model, streamed to the terminal as it is produced."""

import argparse
import sys

import torch
from transformers import TextStreamer, set_seed

from .model_loading import load_model_and_tokenizer
from .tokenization_charrnn import (
    count_unknown_characters,
    is_char_level,
    unknown_warning,
)


def encode_prompt(tokenizer, prompt: str, device) -> dict:
    """
    Token ids of the prompt; warns about characters the vocabulary lacks (they become <unk>). No prompt starts from
    the tokenizer's BOS token (or EOS: a new document starts after one in the training stream), as an id: its text
    (`<eos>`) would be read as five characters, since special-token strings in text stay text.
    """
    if not prompt:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise ValueError("This tokenizer has neither a BOS nor an EOS token to start from: give a --prompt.")
        input_ids = torch.tensor([[start]], device=device)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    unit = "characters" if is_char_level(tokenizer) else "words"
    warning = unknown_warning(count_unknown_characters(tokenizer, [prompt]), unit=unit)
    if warning:
        print(f"warning (prompt): {warning}", file=sys.stderr)
    encoded = tokenizer(prompt, return_tensors="pt")
    return {name: tensor.to(device) for name, tensor in encoded.items()}


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


def sample(model, tokenizer, prompt: str, stream: bool = True, **options) -> list[str]:
    """Generate continuations of `prompt` (the prompt included); print them as they come when `stream`."""
    inputs = encode_prompt(tokenizer, prompt, model.device)
    samples = options.get("num_return_sequences", 1)
    streamer = TextStreamer(tokenizer, skip_special_tokens=True) if stream and samples == 1 and options.get("num_beams", 1) == 1 else None
    output = model.generate(**inputs, streamer=streamer, **options)
    texts = tokenizer.batch_decode(output, skip_special_tokens=True)
    if stream and streamer is None:
        for number, text in enumerate(texts, start=1):
            print(f"--- sample {number} ---\n{text}")
    return texts


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
