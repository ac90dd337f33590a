"""Characters per second of model.generate() against a stateful nn.LSTM loop and the re-run-the-window tutorial loop.

    python scripts/bench_generate.py [--lengths 1000 4000] [--device cuda]
"""

from hf_charrnn.benchmark_generation import main

if __name__ == "__main__":
    raise SystemExit(main())
