"""Corpora from 1 MB to gigabytes: preprocessing speed, peak memory and the cached restart of both training commands.

    python scripts/bench_data.py [--sizes_mb 20 184 1000] [--commands train train-accelerate]
                                 [--before PATH] [--max_rss_gb 20] [--work_dir DIR]

Progress on stderr, JSON on stdout.

For each size, a corpus of random words (34 distinct characters, seeded; like the text of issue 13's measurements,
which had 33) is written to a file, and each command trains on it as a user runs it, in a subprocess with a fresh
datasets cache: `hf-charrnn COMMAND --train_file F --max_steps 10 --hidden_size 128 --validation_split_fraction 0.05`
(the final evaluation capped at 8 K tokens). Measured: the wall time to the first training step (train: the first
logged loss, with `--logging_steps 1`; train-accelerate: its progress bar's first line, drawn as the loop starts) and
to the end, and the peak resident memory of the process and its children (sampled every 0.1 s). Each command then
runs a second time on the same cache (a new output folder): that run's time to the first step is the restart, and
the difference between the two is the preprocessing; size / difference = preprocessing MB/s.

Then the two ways of encoding characters are timed in this process on (up to) 20 MB of the first corpus: tokenizers'
batch encoding and the code-point lookup table the data layer uses.

`--before PATH`: the same measurements with another checkout of the project (e.g. a git worktree of an older commit)
on the Python path, in the same run; a run whose memory passes `--max_rss_gb` is stopped and reported as such (the
old code needed ~400 bytes per character).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from bench_common import log

WORDS_SEED = 13
LETTERS = "abcdefghijklmnopqrstuvwxyz"
PUNCTUATION = ".,;:!?"  # with the letters, space and newline: 34 distinct characters


def write_corpus(path: Path, megabytes: float) -> None:
    """`megabytes` of random words (lowercase, 1-10 letters), sentences and lines: 34 distinct characters."""
    rng = random.Random(WORDS_SEED)
    vocabulary = ["".join(rng.choice(LETTERS) for _ in range(rng.randint(1, 10))) for _ in range(5000)]
    line = []
    lines = []
    for _ in range(20_000):
        line.append(rng.choice(vocabulary) + (rng.choice(PUNCTUATION) if rng.random() < 0.1 else ""))
        if rng.random() < 0.08:
            lines.append(" ".join(line) + "\n")
            line = []
    block = "".join(lines).encode()  # ~100 KB, repeated with a rotation so no two blocks are alike
    target, written = int(megabytes * 1e6), 0
    with open(path, "wb") as file:
        while written < target:
            shift = rng.randrange(len(block))
            piece = block[shift:] + block[:shift]
            piece = piece[piece.index(b"\n") + 1 :][: target - written]
            file.write(piece)
            written += len(piece)


def peak_rss(process: psutil.Process, stop: threading.Event, peak: list[int]) -> None:
    """Sample the resident memory of `process` and its children until `stop`."""
    while not stop.is_set():
        try:
            total = process.memory_info().rss + sum(child.memory_info().rss
                                                    for child in process.children(recursive=True))
            peak[0] = max(peak[0], total)
        except psutil.Error:
            pass
        time.sleep(0.1)


def run_once(command: str, corpus: Path, output_dir: Path, cache: Path, python_path: str | None,
             max_rss_gb: float) -> dict:
    """One training run in a subprocess: seconds to the first logged loss and to the end, peak memory."""
    argv = [sys.executable, "-m", "hf_charrnn.cli", command, "--train_file", str(corpus), "--output_dir",
            str(output_dir), "--max_steps", "10", "--hidden_size", "128", "--validation_split_fraction", "0.05",
            "--logging_steps", "1", "--report_to", "none", "--eval_steps", "0"]
    if command == "train":  # its first logged loss marks the first step; train-accelerate's progress bar does
        argv += ["--disable_tqdm", "true", "--max_eval_samples", "64"]
    else:
        argv += ["--max_eval_tokens", "8192"]
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    if python_path:
        env["PYTHONPATH"] = python_path
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               cwd=output_dir.parent)  # not the repository: `-m` would import the package from there
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=peak_rss, args=(psutil.Process(process.pid), stop, peak), daemon=True)
    sampler.start()
    first_step, killed, tail = None, False, []
    for line in process.stdout:
        tail = (tail + [line])[-20:]
        if first_step is None and ("'loss'" in line or line.startswith("train (BPTT):")):
            first_step = time.monotonic() - started
        if peak[0] > max_rss_gb * 2**30 and not killed:
            killed = True
            process.kill()
    code = process.wait()
    stop.set()
    sampler.join()
    result = {"seconds": round(time.monotonic() - started, 1),
              "first_step_seconds": first_step and round(first_step, 1),
              "peak_rss_gb": round(peak[0] / 2**30, 2), "exit_code": code}
    if killed:
        result["stopped"] = f"memory passed {max_rss_gb} GB"
    elif code != 0:
        result["output_tail"] = "".join(tail)[-2000:]
    return result


def measure(command: str, corpus: Path, megabytes: float, work: Path, python_path: str | None,
            max_rss_gb: float) -> dict:
    """A cold run (fresh cache) and a warm one (the same cache), and what they say about preprocessing."""
    cache = Path(tempfile.mkdtemp(dir=work, prefix="cache-"))
    cold = run_once(command, corpus, work / f"{command}-cold-{cache.name}", cache, python_path, max_rss_gb)
    result = {"cold": cold}
    if cold["exit_code"] == 0:
        warm = run_once(command, corpus, work / f"{command}-warm-{cache.name}", cache, python_path, max_rss_gb)
        result["warm"] = warm
        if cold["first_step_seconds"] and warm["first_step_seconds"]:
            preprocessing = cold["first_step_seconds"] - warm["first_step_seconds"]
            result["preprocessing_seconds"] = round(preprocessing, 1)
            # Under a second the difference is within the start-up time's own variation: no rate to report.
            result["preprocessing_mb_per_s"] = round(megabytes / preprocessing, 1) if preprocessing >= 1 else None
    log(f"{command} {megabytes:g} MB{' (before)' if python_path else ''}: {json.dumps(result)}")
    return result


def encoding_speeds(corpus: Path, megabytes: float = 20.0) -> dict:
    """MB/s of the two ways to turn text into character ids, on the first `megabytes` of `corpus` in 64 K pieces:
    tokenizers' batch encoding (what the data layer did) and the code-point lookup table (what it does now)."""
    from hf_charrnn.token_encoding import encode_batch
    from hf_charrnn.tokenization_charrnn import build_char_tokenizer

    text = corpus.read_text(encoding="utf-8")[: int(megabytes * 1e6)]
    pieces = [text[start : start + 65_536] for start in range(0, len(text), 65_536)]
    tokenizer = build_char_tokenizer(pieces)
    speeds = {}
    for name, encode in (("tokenizers batch encoding", lambda: tokenizer(pieces, add_special_tokens=False)),
                         ("code-point lookup table", lambda: encode_batch(tokenizer, pieces))):
        started = time.perf_counter()
        encode()
        speeds[name] = round(len(text) / 1e6 / (time.perf_counter() - started), 1)
    log(f"Encoding {megabytes:g} MB, MB/s: {speeds}")
    return {"megabytes": megabytes, "mb_per_s": speeds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes_mb", type=float, nargs="+", default=[20, 184, 1000])
    parser.add_argument("--commands", nargs="+", default=["train", "train-accelerate"])
    parser.add_argument("--before", default=None, help="another checkout of the project to measure alongside")
    parser.add_argument("--max_rss_gb", type=float, default=20.0)
    parser.add_argument("--work_dir", default=None, help="where corpora, caches and runs go (default: a temp dir)")
    args = parser.parse_args(argv)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_data-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "sizes": {}}
    for megabytes in args.sizes_mb:
        corpus = work / f"corpus-{megabytes:g}MB.txt"
        if not corpus.exists():
            log(f"Writing a {megabytes:g} MB corpus")
            write_corpus(corpus, megabytes)
        entry = {}
        for command in args.commands:
            entry[command] = measure(command, corpus, megabytes, work, None, args.max_rss_gb)
            if args.before:
                entry[f"{command} (before)"] = measure(command, corpus, megabytes, work, args.before,
                                                       args.max_rss_gb)
        results["sizes"][f"{megabytes:g} MB"] = entry
    results["encoding"] = encoding_speeds(work / f"corpus-{args.sizes_mb[0]:g}MB.txt", min(args.sizes_mb[0], 20))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
