"""Train a CharRNN with transformers' Trainer: `python scripts/train.py --help`."""

from hf_charrnn.training import main

if __name__ == "__main__":
    raise SystemExit(main())
