"""`hf-charrnn env`: the versions and device to paste into a bug report (collected by `hf_charrnn.env`)."""

import argparse
import json

from ..env import collect


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hf-charrnn env", description="Print the versions of Python, torch, transformers and the other libraries "
                                     "hf_charrnn builds on, and the device, for a bug report.")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a list")
    args = parser.parse_args(argv)
    report = collect()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("Copy and paste this into your bug report:\n")
    for key, value in report.items():
        shown = (", ".join(value) or "none") if isinstance(value, list) else value
        print(f"- {key}: {shown}")
    return 0
