"""Start-up cost: `import hf_charrnn`, `from_pretrained` and a whole `hf-charrnn generate`, per Python environment.

    python scripts/bench_startup.py [--pythons .venv/bin/python .venv-floor/bin/python] [--repeats 5]

transformers 5.25 requires the `kernels` package and turns hub kernels on in `from_pretrained` by default
(`use_kernels`, or the environment variable `USE_HUB_KERNELS`). This measures what that costs a CharRNN, whose layers
no hub kernel replaces: each environment (one per `--pythons` entry, e.g. one on 5.24 and one on 5.25) runs each step
in a fresh process `--repeats` times, rounds interleaved, and the script prints the median seconds of each step:
- `import`: a process that imports hf_charrnn (and with it torch and transformers), whole wall time;
- `from_pretrained`: `AutoModelForCausalLM.from_pretrained(folder)` of a 2x512 checkpoint inside a process, as
  transformers does it by default (`default`) and with hub kernels off (`use_kernels=False`);
- `generate_command`: `hf-charrnn generate FOLDER --prompt ROMEO: --max_new_tokens 1`, whole wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOAD_TIMING = """
import json, sys, time
import hf_charrnn
from transformers import AutoModelForCausalLM
folder, option = sys.argv[1], sys.argv[2]
options = {} if option == "default" else {"use_kernels": False}
start = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(folder, **options)
model.eval(); model.train(); model.eval()  # the switches 5.25 re-kernelizes on
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "use_kernels": bool(getattr(model, "use_kernels", False))}))
"""

SAVE_MODEL = """
import sys
from hf_charrnn import CharRNNConfig, CharRNNForCausalLM
from hf_charrnn.tokenization_charrnn import build_char_tokenizer
tokenizer = build_char_tokenizer(["ROMEO: But soft, what light through yonder window breaks?"])
model = CharRNNForCausalLM(CharRNNConfig(vocab_size=len(tokenizer), hidden_size=512, num_layers=2))
model.save_pretrained(sys.argv[1]); tokenizer.save_pretrained(sys.argv[1])
"""


def wall_seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def version_of(python: str, package: str) -> str:
    code = f"from importlib.metadata import version as v\ntry: print(v({package!r}))\nexcept Exception: print('absent')"
    return subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def measure(pythons: list[str], repeats: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="bench_startup_")) / "model"
    subprocess.run([pythons[0], "-c", SAVE_MODEL, str(folder)], check=True, capture_output=True)
    seconds: dict[str, dict[str, list[float]]] = {python: {} for python in pythons}
    kernels_on: dict[str, dict[str, bool]] = {python: {} for python in pythons}
    for _ in range(repeats):
        for python in pythons:
            record = seconds[python]
            record.setdefault("import", []).append(wall_seconds([python, "-c", "import hf_charrnn"]))
            for option in ("default", "use_kernels=False"):
                result = subprocess.run([python, "-c", LOAD_TIMING, str(folder), option], check=True,
                                        capture_output=True, text=True)
                timing = json.loads(result.stdout.strip().splitlines()[-1])
                record.setdefault(f"from_pretrained ({option})", []).append(timing["seconds"])
                kernels_on[python][option] = timing["use_kernels"]
            command = [str(Path(python).parent / "hf-charrnn"), "generate", str(folder), "--prompt", "ROMEO:",
                       "--max_new_tokens", "1"]
            record.setdefault("generate_command", []).append(wall_seconds(command))
    return {
        python: {
            "transformers": version_of(python, "transformers"), "kernels": version_of(python, "kernels"),
            "median_seconds": {step: round(statistics.median(times), 3) for step, times in record.items()},
            "hub_kernels_on_after_load": kernels_on[python],
        }
        for python, record in seconds.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pythons", nargs="+", default=[sys.executable],
                        help="the Python of each environment to compare (its hf-charrnn beside it)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps({"repeats": args.repeats, "environments": measure(args.pythons, args.repeats)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
