"""Loss, bits per character and perplexity of a checkpoint, as JSON: `python scripts/evaluate.py --help`."""

import sys

from hf_charrnn.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["evaluate", *sys.argv[1:]]))
