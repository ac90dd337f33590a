"""Sample text from a trained model: `python scripts/generate.py MODEL --prompt "ROMEO:"` (same as `hf-charrnn generate`)."""

import sys

from hf_charrnn.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["generate", *sys.argv[1:]]))
