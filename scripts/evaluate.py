"""Loss, bits per character and perplexity of a checkpoint, as JSON: `python scripts/evaluate.py --help`."""

from hf_charrnn.evaluate_command import main

if __name__ == "__main__":
    raise SystemExit(main())
