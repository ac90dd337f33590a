"""Validation bits per character of the tutorial char-RNN recipe, the default recipe (Trainer) and stateful BPTT
(Accelerate), each trained for the same wall-clock budget on the same data and scored the same way.

    python scripts/bench_quality.py [--budget_seconds 240] [--threads 2] [--max_eval_chars 100000]

Progress on stderr, JSON on stdout.
"""

from hf_charrnn.benchmark_quality import main

if __name__ == "__main__":
    raise SystemExit(main())
