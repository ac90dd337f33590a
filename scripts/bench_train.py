"""Characters per second of the Trainer path and the Accelerate (stateful BPTT) path against a plain PyTorch loop.

    python scripts/bench_train.py [--steps 20] [--hidden_size 512] [--batch_size 64] [--seq_len 128] [--threads 2]

Progress on stderr, JSON on stdout.
"""

from hf_charrnn.benchmark_training import main

if __name__ == "__main__":
    raise SystemExit(main())
