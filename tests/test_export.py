"""ONNX export (hf_charrnn.export, `hf-charrnn export`): the graphs onnxruntime runs give the tokens PyTorch gives."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from conftest import tiny_model
from hf_charrnn.configuration_charrnn import CELL_TYPES
from hf_charrnn.export import RECORD_FILE, TOLERANCE, export_onnx
from hf_charrnn.tokenization_charrnn import build_char_tokenizer
from test_readme import python_blocks

TEXT = "ROMEO: But soft, what light through yonder window breaks?\nJULIET: Ay me!\n"


def model_and_tokenizer(cell_type="lstm"):
    tokenizer = build_char_tokenizer([TEXT])
    model = tiny_model(cell_type=cell_type, vocab_size=len(tokenizer), input_encoding="embedding")
    model.config.eos_token_id = None  # fixed lengths: generate() never stops early
    return model, tokenizer


def onnx_greedy(folder, prompt_ids, new_tokens, cell_type):
    """Greedy decoding with onnxruntime and numpy only: the prompt graph, then the decode step per token."""
    step = onnxruntime.InferenceSession(str(folder / "decode_step.onnx"))
    names = ["hidden", "cell"] if cell_type == "lstm" else ["hidden"]
    config = json.loads((folder / "config.json").read_text())
    state = [np.zeros((config["num_layers"], len(prompt_ids), config["hidden_size"]), np.float32) for _ in names]
    if (folder / "prompt.onnx").exists():  # LSTM and GRU: the whole prompt at once
        prompt = onnxruntime.InferenceSession(str(folder / "prompt.onnx"))
        logits, *state = prompt.run(None, {"input_ids": np.array(prompt_ids), **dict(zip(names, state))})
    else:
        for column in np.array(prompt_ids).T:
            logits, *state = step.run(None, {"input_ids": column[:, None], **dict(zip(names, state))})
    tokens = []
    for _ in range(new_tokens):
        token = logits.argmax(-1)[:, None]
        tokens.append(token)
        logits, *state = step.run(None, {"input_ids": token, **dict(zip(names, state))})
    return np.concatenate(tokens, axis=1)


@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_onnx_greedy_decoding_gives_generates_tokens(cell_type, tmp_path):
    model, tokenizer = model_and_tokenizer(cell_type)
    report = export_onnx(model, tokenizer, tmp_path)
    assert all(difference <= TOLERANCE for difference in report.max_abs_difference.values())
    prompts = [tokenizer("ROMEO: But")["input_ids"], tokenizer("JULIET: Ay")["input_ids"]]
    expected = model.generate(torch.tensor(prompts), attention_mask=torch.ones(2, 10, dtype=torch.long),
                              max_new_tokens=30, do_sample=False)[:, 10:]
    assert np.array_equal(onnx_greedy(tmp_path, prompts, 30, cell_type), expected.numpy())
    record = json.loads((tmp_path / RECORD_FILE).read_text())
    assert record["input_names"][:2] == ["input_ids", "hidden"] and "tokenizer.json" in record["files"]
    has_prompt_graph = cell_type in ("lstm", "gru")  # ONNX has LSTM and GRU operators; a plain RNN gets unrolled
    assert ("prompt.onnx" in record["files"]) == has_prompt_graph and bool(record["notes"]) != has_prompt_graph


def test_a_bfloat16_model_exports_in_float32_and_is_left_as_it_was(tmp_path):
    model, tokenizer = model_and_tokenizer()
    model = model.to(torch.bfloat16)
    export_onnx(model, tokenizer, tmp_path)
    assert model.dtype == torch.bfloat16
    session = onnxruntime.InferenceSession(str(tmp_path / "decode_step.onnx"))
    assert {arg.type for arg in session.get_inputs()[1:]} == {"tensor(float)"}


def hf_charrnn(*arguments, cwd, prelude=""):
    code = f"import sys\n{prelude}\nfrom hf_charrnn.cli import main\nsys.exit(main({list(map(str, arguments))!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_command_exports_and_the_readme_loop_samples_from_it(tmp_path):
    model, tokenizer = model_and_tokenizer()
    model.save_pretrained(tmp_path / "outputs" / "my-model")
    tokenizer.save_pretrained(tmp_path / "outputs" / "my-model")
    done = hf_charrnn("export", "outputs/my-model", "--output_dir", "outputs/my-model-onnx", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "decode_step.onnx: onnxruntime matches PyTorch" in done.stdout and "Warning" not in done.stderr
    [loop] = python_blocks("Exporting to ONNX")
    sampled = subprocess.run([sys.executable, "-c", loop], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    assert sampled.stdout.startswith("ROMEO:") and len(sampled.stdout.rstrip("\n")) >= len("ROMEO:") + 200

    again = hf_charrnn("export", "outputs/my-model", "--output_dir", "outputs/my-model-onnx", cwd=tmp_path)
    assert again.returncode == 2 and "already holds an export" in again.stderr and "--overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    without = hf_charrnn("export", "outputs/my-model", "--output_dir", "elsewhere", cwd=tmp_path,
                         prelude="sys.modules['onnxruntime'] = None  # as if it were not installed")
    assert without.returncode == 2 and "pip install 'hf_charrnn[onnx]'" in without.stderr
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.slow
def test_the_onnx_benchmark_prints_its_figures(tmp_path):
    script = Path(__file__).resolve().parent.parent / "scripts" / "bench_onnx.py"
    done = subprocess.run([sys.executable, str(script), "--tokens", "20", "--hidden_size", "32"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["greedy"]["onnx_speedup"] > 0 and figures["prompt"]["tokens"] == 4000
