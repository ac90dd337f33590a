"""Validation bits per character of the tutorial char-RNN recipe, the default recipe (Trainer) and stateful BPTT
(Accelerate), each trained for the same wall-clock budget on the same data and scored the same way.

    python scripts/bench_quality.py [--budget_seconds 240] [--threads 2] [--max_eval_chars 100000]

Progress on stderr, JSON on stdout.

Three recipes train on the same corpus (the embedded Shakespeare plays by default, the same train/validation split),
each for the same number of seconds of training, and are scored the same way:

(a) ``tutorial`` -- the classic char-RNN tutorial recipe, written in plain PyTorch as tutorials write it (bench_tutorial.py): a
    2-layer LSTM of 256 units over a 64-dimensional embedding, windows of 100 characters that may start at every
    position of the text (step 1; a batch is random windows), the loss on the LAST character of each window only
    (the character after the window), Adam at 2e-3, constant. It is the reference the project's recipes must beat.
(b) ``default`` -- the project's default recipe, what `hf-charrnn demo` runs (`hf_charrnn.demo`: DEMO_MODEL, batches of
    DEMO_BATCH_SIZE blocks of DEMO_BLOCK_SIZE characters, AdamW at DEMO_LEARNING_RATE with a cosine schedule and
    clipping at 1) through `hf_charrnn.trainer.train()` (the Trainer path). Every block starts from a zero state and
    every position is a training target.
(c) ``bptt`` -- the stateful truncated-BPTT path (`hf_charrnn.training_accelerate.train_bptt`) with the same model,
    batch shape, learning rate, schedule and clipping as (b): the state is carried from batch to batch.

The budget covers the optimizer steps only (not loading data, building the tokenizer or scoring). The schedules of
(b) and (c) are set for the number of steps that fit the budget, from a short timed calibration of real steps of that
model and batch shape (as `hf-charrnn demo` plans its steps); each run is also stopped when its budget is spent --
(b) by a `TrainerCallback` setting `control.should_training_stop`, (c) from `train_bptt`'s per-step callback (the
model object passed in keeps the weights trained so far), (a) by its own loop. Periodic evaluation, checkpoints and
samples during training are off for all three.

Scoring, identical for all: bits per character on the validation split (or its first `max_eval_chars` characters),
with the recurrent state carried over the whole text (`hf_charrnn.evaluation.score_stream`, `eval_batch_size` rows);
the tutorial model is copied into a `CharRNNForCausalLM` of the same shape for this. Also reported, for every model:
``windowed_bpc``, the tutorial's own regime -- each of the first `window_eval_predictions` validation characters
predicted from the `window` characters before it, from a zero state -- so that neither regime favours one recipe.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import torch
from bench_common import log
from bench_recipes import calibrate_seconds_per_step, train_bptt_recipe, train_default_recipe
from bench_tutorial import (
    TUTORIAL_BATCH_SIZE,
    TUTORIAL_LEARNING_RATE,
    TUTORIAL_WINDOW,
    train_tutorial,
    tutorial_to_charrnn,
    windowed_bpc,
)

from hf_charrnn import data
from hf_charrnn.demo import (
    DEMO_BATCH_SIZE,
    DEMO_BLOCK_SIZE,
    DEMO_LEARNING_RATE,
    DEMO_MODEL,
)
from hf_charrnn.evaluation import (
    DEFAULT_CHUNK_LENGTH,
    dataset_stream,
    score_stream,
    summarize_scores,
)
from hf_charrnn.reporting import generate_samples
from hf_charrnn.trainer_utils import load_or_build_tokenizer, load_raw_data
from hf_charrnn.training_args import CorpusArguments, ModelArguments

RECIPES = ("tutorial", "default", "bptt")


# ----------------------------------------------------------------------------------
# (a) The tutorial recipe, in plain PyTorch
# ----------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------
# Budgets and calibration
# ----------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------
# (b) the default recipe (Trainer) and (c) stateful BPTT (Accelerate)
# ----------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------
# Scoring (the same for every recipe)
# ----------------------------------------------------------------------------------


def validation_stream(split, tokenizer, max_chars: int | None = None) -> tuple[torch.Tensor, int]:
    """The validation split as scored (`dataset_stream`), optionally only its first `max_chars` predicted tokens."""
    ids, characters = dataset_stream(split, tokenizer)
    if max_chars is not None and ids.numel() > max_chars + 1:
        characters = round(characters * max_chars / (ids.numel() - 1))
        ids = ids[: max_chars + 1]
    return ids, characters


def carried_state_bpc(model, ids: torch.Tensor, characters: int, batch_size: int = 16,
                      chunk_length: int = DEFAULT_CHUNK_LENGTH) -> dict:
    """`hf_charrnn.evaluation`'s scoring: the state carried over the stream, `batch_size` contiguous rows."""
    scores = score_stream(model, ids, chunk_length=chunk_length, batch_size=batch_size)
    return summarize_scores(scores["nats"], scores["tokens"], characters)


@torch.no_grad()


def _sample(model, tokenizer, length: int) -> str | None:
    if not length:
        return None

    return generate_samples(model, tokenizer, ["ROMEO:"], seed=0, max_new_tokens=length)[0]["text"]


# ----------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------


def run_quality_benchmark(budget_seconds: float = 240.0, dataset: str = "shakespeare", recipes=RECIPES,
                          hidden_size: int | None = None, num_layers: int | None = None,
                          embedding_dim: int | None = None, batch_size: int | None = None,
                          block_size: int | None = None, window: int = TUTORIAL_WINDOW,
                          tutorial_batch_size: int = TUTORIAL_BATCH_SIZE, max_eval_chars: int | None = None,
                          eval_batch_size: int = 16, window_eval_predictions: int = 5000, sample_length: int = 200,
                          seed: int = 42, device: str = "cpu", output_dir: str | None = None) -> dict:
    """Train and score the recipes (see the module docstring); returns the JSON-ready results."""
    _check_choices(recipes, budget_seconds)
    shape = {"hidden_size": hidden_size, "num_layers": num_layers, "embedding_dim": embedding_dim}
    model_kwargs = {**DEMO_MODEL, **{key: value for key, value in shape.items() if value is not None}}
    batch_size = batch_size or DEMO_BATCH_SIZE
    block_size = block_size or DEMO_BLOCK_SIZE

    log(f"Loading {dataset} and building the character tokenizer")
    splits = load_raw_data(CorpusArguments(dataset=dataset))
    tokenizer, _ = load_or_build_tokenizer(ModelArguments(), [row["text"] for row in splits["train"]])
    train_stream = data.tokenize_stream(splits["train"], tokenizer)
    eval_ids, eval_chars = validation_stream(splits["validation"], tokenizer, max_eval_chars)
    capped = max_eval_chars is not None and eval_chars < sum(len(row["text"]) + 1 for row in splits["validation"])
    results = _results_header(device, dataset, train_stream, budget_seconds, eval_batch_size, eval_chars, capped,
                              window, window_eval_predictions)
    scoring = dict(reference=tokenizer, eval_ids=eval_ids, eval_chars=eval_chars, eval_batch_size=eval_batch_size,
                   window=window, window_eval_predictions=window_eval_predictions, sample_length=sample_length,
                   results=results)

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(output_dir or scratch)
        if "tutorial" in recipes:
            log(f"(a) tutorial recipe: windows of {window}, last-character loss, Adam {TUTORIAL_LEARNING_RATE}, "
                f"{budget_seconds:g} s")
            model, info = train_tutorial(
                train_stream, len(tokenizer), budget_seconds, embedding_dim=model_kwargs["embedding_dim"],
                hidden_size=model_kwargs["hidden_size"], num_layers=model_kwargs["num_layers"], window=window,
                batch_size=tutorial_batch_size, seed=seed, device=device,
            )
            score_recipe("tutorial", tutorial_to_charrnn(model, tokenizer), tokenizer, info, **scoring)
        planned = step_seconds = None
        if "default" in recipes or "bptt" in recipes:
            step_seconds = calibrate_seconds_per_step(model_kwargs, len(tokenizer), batch_size, block_size,
                                                      DEMO_LEARNING_RATE, device)
            planned = max(1, int(budget_seconds / step_seconds))
            results["calibration"] = {"seconds_per_step": round(step_seconds, 4), "planned_steps": planned}
            log(f"Calibration: {step_seconds:.3f} s per step of {batch_size} x {block_size}: {planned} steps fit "
                f"{budget_seconds:g} s")
        if "default" in recipes:
            log(f"(b) default recipe (hf-charrnn demo's, Trainer path), {budget_seconds:g} s")
            model, model_tokenizer, info = train_default_recipe(
                dataset, model_kwargs, batch_size, block_size, DEMO_LEARNING_RATE, planned, budget_seconds,
                str(root / "default"), seed=seed, device=device,
            )
            score_recipe("default", model, model_tokenizer, info, **scoring)
        if "bptt" in recipes:
            log(f"(c) stateful truncated BPTT (Accelerate path), {budget_seconds:g} s")
            model, model_tokenizer, info = train_bptt_recipe(
                splits, dataset, tokenizer, model_kwargs, batch_size, block_size, DEMO_LEARNING_RATE, planned,
                budget_seconds, step_seconds, str(root / "bptt"), seed=seed, device=device,
            )
            score_recipe("bptt", model, model_tokenizer, info, **scoring)
    return _with_comparisons(results, window_eval_predictions)


def _check_choices(recipes, budget_seconds: float) -> None:
    unknown = set(recipes) - set(RECIPES)
    if unknown or not recipes:
        raise ValueError(f"Unknown recipe(s) {sorted(unknown)}; choose from {', '.join(RECIPES)}.")
    if budget_seconds <= 0:
        raise ValueError(f"--budget_seconds must be positive, got {budget_seconds}.")


def _results_header(device, dataset, train_stream, budget_seconds, eval_batch_size, eval_chars, capped, window,
                    window_eval_predictions) -> dict:
    return {
        "device": device,
        "threads": torch.get_num_threads(),
        "dataset": dataset,
        "train_characters": int(train_stream.numel()),
        "budget_seconds_per_recipe": budget_seconds,
        "scoring": {
            "bpc": f"carried state over the validation split, {eval_batch_size} rows (hf_charrnn.evaluation."
                   "score_stream)",
            "validation_characters": eval_chars,
            "validation_capped": capped,
            "windowed_bpc": f"first {window_eval_predictions} validation characters after the first {window}, "
                            f"each from the {window} before it, zero state",
        },
        "recipes": {},
    }


def score_recipe(name: str, model, model_tokenizer, info: dict, *, reference, eval_ids, eval_chars, eval_batch_size,
                 window, window_eval_predictions, sample_length, results) -> None:
    """Score a trained recipe the same way as the others and record it in `results["recipes"]`."""
    if model_tokenizer.get_vocab() != reference.get_vocab():
        raise RuntimeError(f"Recipe {name} built a different vocabulary; the scores would not be comparable.")
    started = time.perf_counter()
    scores = carried_state_bpc(model, eval_ids, eval_chars, batch_size=eval_batch_size)
    info["validation_loss"] = scores["loss"]
    info["bpc"] = scores["bpc"]
    info["windowed_bpc"] = (windowed_bpc(model, eval_ids, window, window_eval_predictions)
                            if window_eval_predictions else None)
    info["sample"] = _sample(model, model_tokenizer, sample_length)
    windowed = "" if info["windowed_bpc"] is None else f" (windowed {info['windowed_bpc']:.4f})"
    log(f"  {name}: validation {info['bpc']:.4f} bpc{windowed} after "
        f"{info['steps']} steps, {info['train_seconds']:.0f} s; scored in {time.perf_counter() - started:.1f} s")
    results["recipes"][name] = info


def _with_comparisons(results: dict, window_eval_predictions: int) -> dict:
    """The differences the targets are about, and every figure rounded to 4 decimals."""
    scored = results["recipes"]
    if "tutorial" in scored and "default" in scored:
        results["tutorial_minus_default_bpc"] = round(scored["tutorial"]["bpc"] - scored["default"]["bpc"], 4)
        if window_eval_predictions:
            results["tutorial_minus_default_windowed_bpc"] = round(
                scored["tutorial"]["windowed_bpc"] - scored["default"]["windowed_bpc"], 4)
        results["target"] = "tutorial_minus_default_bpc >= 0.3"
    if "default" in scored and "bptt" in scored:
        # Positive: the stateful BPTT path ends better than the Trainer path at the same budget.
        results["default_minus_bptt_bpc"] = round(scored["default"]["bpc"] - scored["bptt"]["bpc"], 4)
    for info in scored.values():
        for key in ("bpc", "windowed_bpc", "validation_loss"):
            if isinstance(info[key], float) and math.isfinite(info[key]):
                info[key] = round(info[key], 4)
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="bench_quality",
        description="Validation bits per character of the tutorial char-RNN recipe, the project's default recipe "
        "(hf-charrnn demo, Trainer) and stateful truncated BPTT (Accelerate), each trained for the same wall-clock "
        "budget on the same data and scored the same way. Progress goes to stderr, the JSON result to stdout.",
    )
    parser.add_argument("--budget_seconds", type=float, default=240.0, help="training time per recipe")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    parser.add_argument("--dataset", default="shakespeare", help="as `hf-charrnn train --dataset`")
    parser.add_argument("--hidden_size", type=int, help="all recipes (default: the demo's, 256)")
    parser.add_argument("--num_layers", type=int, help="all recipes (default: the demo's, 2)")
    parser.add_argument("--embedding_dim", type=int, help="all recipes (default: the demo's, 64)")
    parser.add_argument("--batch_size", type=int, help="blocks per batch of (b) and (c) (default: the demo's, 32)")
    parser.add_argument("--block_size", type=int, help="block / BPTT length of (b) and (c) (default: the demo's, 256)")
    parser.add_argument("--window", type=int, default=TUTORIAL_WINDOW, help="(a)'s window length")
    parser.add_argument("--tutorial_batch_size", type=int, default=TUTORIAL_BATCH_SIZE, help="(a)'s windows per batch")
    parser.add_argument("--max_eval_chars", type=int, help="score only the first this-many validation characters")
    parser.add_argument("--eval_batch_size", type=int, default=16, help="rows of the carried-state scoring")
    parser.add_argument("--window_eval_predictions", type=int, default=5000, help="characters scored windowed")
    parser.add_argument("--sample_length", type=int, default=200, help="characters sampled from each model (0: none)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output_dir", help="keep the library runs' outputs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run_quality_benchmark(
        budget_seconds=args.budget_seconds, dataset=args.dataset, recipes=tuple(args.recipes),
        hidden_size=args.hidden_size, num_layers=args.num_layers, embedding_dim=args.embedding_dim,
        batch_size=args.batch_size, block_size=args.block_size, window=args.window,
        tutorial_batch_size=args.tutorial_batch_size, max_eval_chars=args.max_eval_chars,
        eval_batch_size=args.eval_batch_size, window_eval_predictions=args.window_eval_predictions,
        sample_length=args.sample_length, seed=args.seed, device=args.device, output_dir=args.output_dir,
    )
    print(json.dumps(results, indent=2))
    return 0


__all__ = ["RECIPES", "carried_state_bpc", "main", "run_quality_benchmark", "score_recipe", "validation_stream"]


if __name__ == "__main__":
    raise SystemExit(main())
