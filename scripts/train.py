"""Train a CharRNN with transformers' Trainer: `python scripts/train.py --help`."""

import sys

from hf_charrnn.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["train", *sys.argv[1:]]))
