"""A user's own small text: each training command with only a budget, against a small char transformer given the same
minutes, scored on a held-out tail the runs never saw.

    python scripts/bench_small_corpus.py [--minutes 10] [--sizes 0.3 1 3] [--commands train train-accelerate]
                                         [--output_dir DIR]

Progress on stderr, JSON on stdout.

The corpora: single documents of about 0.3, 1 and 3 MB (`--sizes`, in millions of characters), the embedded plays
cleaned and concatenated in a fixed order (alphabetical by slug), cut at a line end. The last 10 % of each, cut at a
line end, is written to its own file and never trained on: it holds later plays, with speakers and words the first
nine tenths never show, which is what a char model meets in a user's held-out text. Each training command runs as a
user runs it, in a subprocess: `hf-charrnn COMMAND --train_file TRAIN --max_train_minutes N --output_dir DIR` (and
only switches for quiet output), then `hf-charrnn evaluate --model_name_or_path DIR --text_file HELD_OUT` scores it:
bits per character with the recurrent state carried over the whole file, every character from all that precedes it.

The reference, in the same script and budget: transformers' `GPT2LMHeadModel` (4 layers, 4 heads, 128 wide, 64
positions, dropout 0) over the training file's characters (plus one id for characters it never saw), nanoGPT's
README CPU recipe: batches of 12 random windows of 64, AdamW at 1e-3 (betas 0.9/0.99, weight decay 0.1), 100
warm-up steps, then a cosine to 1e-4 over the rest of the wall-clock budget, gradients clipped at 1, fp32, for
`--minutes` of training-loop time. It is scored on the same held-out file in windows of its 64 positions: the first
window scores all its characters, each later window moves on by 32 and scores its last 32, so every character after
the first 32 is predicted from 32 to 63 characters before it (its attention's limit). The result prints each
command's held-out bpc (and beside it the figure with dynamic evaluation, `--dynamic_evaluation`'s defaults, which
is not part of the comparison: the reference does not adapt), its own validation bpc (the last 5 % of the training
file, which continues the text it trained on and reads easier), its steps and passes over the text, and its margin
against the reference (positive: better).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_budget import run_command
from bench_common import log
from torch.nn import functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from hf_charrnn.shakespeare import clean_play_markdown, shakespeare_plays

HELD_OUT_FRACTION = 0.1
REFERENCE = dict(n_layer=4, n_head=4, n_embd=128, n_positions=64, batch_size=12, learning_rate=1e-3, min_lr=1e-4,
                 warmup_steps=100, weight_decay=0.1, grad_clip=1.0)


def plays_text(characters: int) -> str:
    """At least `characters` of the cleaned plays in alphabetical order, cut at the line end after that many."""
    text = ""
    for slug, path in sorted(shakespeare_plays().items()):
        text += clean_play_markdown(path.read_text(encoding="utf-8")).strip() + "\n\n"
        if len(text) >= characters:
            break
    end = text.find("\n", characters)
    return text[: end + 1 if end >= 0 else len(text)]


def write_corpus(folder: Path, millions: float) -> tuple[Path, Path]:
    """The training file (first 90 %) and the held-out file (the rest), both cut at a line end."""
    text = plays_text(int(millions * 1e6))
    cut = text.find("\n", int(len(text) * (1 - HELD_OUT_FRACTION))) + 1
    folder.mkdir(parents=True, exist_ok=True)
    train, held_out = folder / "train.txt", folder / "held_out.txt"
    train.write_text(text[:cut], encoding="utf-8")
    held_out.write_text(text[cut:], encoding="utf-8")
    return train, held_out


def held_out_bpc(output_dir: Path, held_out: Path) -> tuple[float, float]:
    """`hf-charrnn evaluate --text_file HELD_OUT --dynamic_evaluation` of a trained folder: the static figure (the
    state carried over the whole file) and the dynamic one (the weights adapting as they read it, defaults)."""
    scores = output_dir / "held_out_scores.json"
    evaluation = subprocess.run([sys.executable, "-m", "hf_charrnn.cli", "evaluate", "--model_name_or_path",
                                 str(output_dir), "--text_file", str(held_out), "--output_file", str(scores),
                                 "--dynamic_evaluation"], capture_output=True, text=True)
    if evaluation.returncode != 0:
        raise RuntimeError(f"evaluate failed ({evaluation.returncode}):\n{evaluation.stderr[-3000:]}")
    result = json.loads(scores.read_text(encoding="utf-8"))
    return round(result["bpc"], 4), round(result["dynamic_evaluation"]["bpc"], 4)


def reference_lr(step: int, elapsed: float, budget: float) -> float:
    """Linear warm-up over the first steps, then a cosine from the peak to the floor over the rest of the budget."""
    peak, floor = REFERENCE["learning_rate"], REFERENCE["min_lr"]
    if step < REFERENCE["warmup_steps"]:
        return peak * (step + 1) / REFERENCE["warmup_steps"]
    progress = min(elapsed / budget, 1.0)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


def reference_model(vocab_size: int) -> GPT2LMHeadModel:
    config = GPT2Config(vocab_size=vocab_size, n_layer=REFERENCE["n_layer"], n_head=REFERENCE["n_head"],
                        n_embd=REFERENCE["n_embd"], n_positions=REFERENCE["n_positions"], resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None)
    return GPT2LMHeadModel(config)


def train_reference(ids: torch.Tensor, vocab_size: int, minutes: float, seed: int = 0) -> tuple[GPT2LMHeadModel, int]:
    """nanoGPT's CPU recipe (see the module docstring) for `minutes` of wall-clock training; the model and its steps."""
    torch.manual_seed(seed)
    model = reference_model(vocab_size).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=REFERENCE["learning_rate"], betas=(0.9, 0.99),
                                  weight_decay=REFERENCE["weight_decay"])
    window, batch_size, budget = REFERENCE["n_positions"], REFERENCE["batch_size"], minutes * 60
    started, step = time.perf_counter(), 0
    while (elapsed := time.perf_counter() - started) < budget:
        for group in optimizer.param_groups:
            group["lr"] = reference_lr(step, elapsed, budget)
        starts = torch.randint(0, len(ids) - window - 1, (batch_size,))
        batch = torch.stack([ids[s : s + window + 1] for s in starts.tolist()])
        loss = F.cross_entropy(model(batch[:, :-1]).logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), REFERENCE["grad_clip"])
        optimizer.step()
        step += 1
        if step % 1000 == 0:
            log(f"  reference step {step}: loss {loss.item():.3f} nats, {elapsed:.0f} s")
    return model.eval(), step


@torch.no_grad()
def windowed_bpc(model: GPT2LMHeadModel, ids: torch.Tensor, window: int, stride: int) -> float:
    """Bits per character over `ids`, each predicted from the window before it (see the module docstring)."""
    total_nats, scored = 0.0, 0
    for start in range(0, len(ids) - 1, stride):
        chunk = ids[start : start + window + 1]
        first = 0 if start == 0 else window - stride  # the targets before it were scored by the window before
        if first < len(chunk) - 1:
            logits = model(chunk[None, :-1]).logits[0]
            total_nats += F.cross_entropy(logits[first:], chunk[1 + first :], reduction="sum").item()
            scored += len(chunk) - 1 - first
        if start + window + 1 >= len(ids):
            break
    return total_nats / scored / math.log(2)


def run_reference(train_file: Path, held_out: Path, minutes: float) -> dict:
    text = train_file.read_text(encoding="utf-8")
    vocabulary = {c: i for i, c in enumerate(sorted(set(text)))}
    unknown = len(vocabulary)  # characters the training text never shows
    log(f"reference: GPT2LMHeadModel 4x4x128, context 64, {minutes:g} min")
    model, steps = train_reference(torch.tensor([vocabulary[c] for c in text]), len(vocabulary) + 1, minutes)
    held = held_out.read_text(encoding="utf-8")
    held_ids = torch.tensor([vocabulary.get(c, unknown) for c in held])
    window = REFERENCE["n_positions"]
    return {"held_out_bpc": round(windowed_bpc(model, held_ids, window, window // 2), 4), "steps": steps,
            "epochs": round(steps * REFERENCE["batch_size"] * window / len(text), 2),
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "unknown_held_out_characters": sum(c not in vocabulary for c in held)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_small_corpus", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.3, 1.0, 3.0],
                        help="corpus sizes in millions of characters")
    parser.add_argument("--commands", nargs="+", default=["train", "train-accelerate"],
                        choices=["train", "train-accelerate"])
    parser.add_argument("--no_reference", action="store_true", help="skip the transformer (e.g. to rerun one command)")
    parser.add_argument("--output_dir", help="keep the corpora and runs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    results = {"minutes": args.minutes, "threads": torch.get_num_threads(), "corpora": {}}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.output_dir or scratch)
        for millions in args.sizes:
            label = f"{millions:g}M"
            train_file, held_out = write_corpus(root / label, millions)
            entry = {"train_characters": len(train_file.read_text(encoding="utf-8")),
                     "held_out_characters": len(held_out.read_text(encoding="utf-8")), "runs": {}}
            if not args.no_reference:
                entry["reference"] = run_reference(train_file, held_out, args.minutes)
                log(f"{label} reference: {entry['reference']['held_out_bpc']:.4f} bpc")
            for command in args.commands:
                run = run_command(command, args.minutes, root / label / command, ("--train_file", str(train_file)))
                run["held_out_bpc"], run["held_out_bpc_dynamic"] = held_out_bpc(root / label / command, held_out)
                if "reference" in entry:
                    run["below_reference_bpc"] = round(entry["reference"]["held_out_bpc"] - run["held_out_bpc"], 4)
                log(f"{label} {command}: {run['held_out_bpc']:.4f} bpc held out ({run['own_validation_bpc']:.4f} "
                    f"own validation; {run['held_out_bpc_dynamic']:.4f} with dynamic evaluation), {run['steps']} "
                    f"steps, {run['epochs']} passes")
                entry["runs"][command] = run
            results["corpora"][label] = entry
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
