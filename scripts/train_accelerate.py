"""Stateful truncated-BPTT training with accelerate: `python scripts/train_accelerate.py --help`,
or on two CPU processes: `accelerate launch --multi_gpu --num_processes 2 scripts/train_accelerate.py ... --cpu`
(accelerate's own `--cpu` flag starts a single process)."""

import sys

from hf_charrnn.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["train-accelerate", *sys.argv[1:]]))
