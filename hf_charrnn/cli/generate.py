"""`hf-charrnn generate`: sample text from a trained model (folder or Hub id), streamed as it is produced."""

import argparse
import sys
from pathlib import Path

from transformers import set_seed

from ..generate import primed_state, sample, sample_records
from ..model_loading import load_model_and_tokenizer
from ..states import load_state, save_state
from .dynamic_options import add_dynamic_arguments, dynamic_settings
from .text_input import text_from_option


def generation_options(args: argparse.Namespace) -> dict:
    """Only what the user set: the rest comes from the checkpoint's generation_config.json."""
    options = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "num_beams": args.num_beams,
        "num_return_sequences": args.num_records or args.num_samples,
        "repetition_penalty": args.repetition_penalty,
        "no_repeat_ngram_size": args.no_repeat_ngram_size,
        "stop_strings": args.stop,
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
    parser.add_argument("--prompt", help="text to continue; '-' reads it from standard input. Without it, or from "
                        "an empty pipe, sampling starts where documents start (after the <eos> token); with "
                        "--num_records the prompt is the beginning of every record, read after <eos> too")
    parser.add_argument("--max_new_tokens", type=int, help="how many characters (tokens) to add")
    parser.add_argument("--temperature", type=float, help="below 1: safer, more repetitive; above 1: wilder")
    parser.add_argument("--top_k", type=int, help="sample among the k most likely characters only (0: all)")
    parser.add_argument("--top_p", type=float, help="sample among the most likely characters whose "
                        "probabilities add up to p (nucleus sampling)")
    parser.add_argument("--num_beams", type=int, help="beam search with this many beams (greedy unless "
                        "--temperature is given too)")
    parser.add_argument("--num_samples", type=int, help="how many different samples to draw")
    parser.add_argument("--num_records", type=int, help="sample this many records (names, titles, lines: what the "
                        "model learned as documents), each ending where the model ends one; printed one per line")
    parser.add_argument("--stop", action="append", metavar="TEXT", help="end a sample after this text (repeat for "
                        "several; the text is kept), e.g. --stop $'\\n' for one line")
    parser.add_argument("--repetition_penalty", type=float, help="above 1: less likely to repeat what was generated "
                        "(1.1-1.3 against loops)")
    parser.add_argument("--no_repeat_ngram_size", type=int, help="never repeat a sequence of this many characters")
    parser.add_argument("--greedy", action="store_true", help="always take the most likely character")
    parser.add_argument("--seed", type=int, help="make sampling reproducible")
    parser.add_argument("--revision", help="Hub branch, tag or commit to load")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--no_stream", action="store_true", help="print only the finished samples")
    parser.add_argument("--save_state", metavar="FILE", help="save the state after reading the prompt (safetensors, "
                        "a few KB): --load_state FILE continues from it later without reading the prompt again; "
                        "with --max_new_tokens 0 only that")
    parser.add_argument("--load_state", metavar="FILE", help="continue from a state saved with --save_state by this "
                        "model (--prompt, if given, continues its prompt): the tokens one long call would give")
    add_dynamic_arguments(parser)
    return parser


def read_prompt(prompt: str | None) -> str:
    """The prompt text ('' for none: sampling then starts after <eos>, where documents start in training)."""
    return text_from_option(prompt, "--prompt") if prompt else ""


def check_options(args: argparse.Namespace) -> None:
    """Values generate() would reject deep inside, or silently misuse, named here."""
    for name in ("max_new_tokens", "num_samples", "num_records", "num_beams", "no_repeat_ngram_size"):
        value, least = getattr(args, name), 0 if name == "no_repeat_ngram_size" else 1
        least = 0 if name == "max_new_tokens" and args.save_state else least  # only priming and saving the state
        if value is not None and value < least:
            raise ValueError(f"--{name} must be at least {least}, got {value}.")
    if args.repetition_penalty is not None and args.repetition_penalty <= 0:
        raise ValueError(f"--repetition_penalty must be above 0 (1 = none), got {args.repetition_penalty}.")
    if args.num_records and args.num_samples:
        raise ValueError("Give --num_records or --num_samples, not both.")
    if args.stop is not None and not all(args.stop):
        raise ValueError("--stop needs a non-empty text.")
    if args.num_records and (args.greedy or (args.num_beams or 1) > 1):
        raise ValueError("--num_records samples its records: with --greedy or --num_beams they would all be the same "
                         "record. Leave those out (--temperature makes them safer).")
    if dynamic_settings(args) is not None and (not args.prompt or args.save_state or args.load_state):
        raise ValueError("--dynamic_evaluation adapts the weights to the prompt before sampling: give a --prompt (a "
                         "long one: a page of the text to continue), without --save_state or --load_state (a state "
                         "belongs to the trained weights).")
    if args.save_state and not Path(args.save_state).expanduser().resolve().parent.is_dir():
        raise ValueError(f"--save_state {args.save_state}: its folder does not exist. Create it first, or save the "
                         "state elsewhere.")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_options(args)
    if args.seed is not None:
        set_seed(args.seed)
    model, tokenizer = load_model_and_tokenizer(args.model, revision=args.revision, device=args.device)
    loaded = load_state(args.load_state, model) if args.load_state else None
    state = primed_state(model, tokenizer, read_prompt(args.prompt), loaded, as_record=bool(args.num_records),
                         dynamic=dynamic_settings(args))  # the weights adapted to the prompt (this process only)
    if args.save_state:
        save_state(args.save_state, model, state)
        print(f"Saved the state after {state.prompt_ids.shape[1]} prompt tokens to {args.save_state}.",
              file=sys.stderr)
        if args.max_new_tokens == 0:
            return 0
    if args.num_records:
        print("\n".join(sample_records(model, tokenizer, state, **generation_options(args))))
        return 0
    shown_from = loaded.prompt_ids.shape[1] if loaded is not None else 0  # not the saved prompt again
    texts = sample(model, tokenizer, state, stream=not args.no_stream, shown_from=shown_from,
                   **generation_options(args))
    if args.no_stream:
        print("\n\n".join(texts))
    return 0
