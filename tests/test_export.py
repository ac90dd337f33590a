"""ONNX export (hf_charrnn.export, `hf-charrnn export`): the graphs onnxruntime runs give the tokens PyTorch gives."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from testing_utils import hf_charrnn_in_process, python_blocks, tiny_model
from hf_charrnn.configuration_charrnn import CELL_TYPES
from hf_charrnn.export import RECORD_FILE, TOLERANCE, export_onnx
from hf_charrnn.tokenization_charrnn import build_char_tokenizer

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
    assert set(report.max_abs_difference) == ({"decode_step", "prompt"} if cell_type in ("lstm", "gru")
                                              else {"decode_step"})
    prompts = [tokenizer("ROMEO: But")["input_ids"], tokenizer("JULIET: Ay")["input_ids"]]
    expected = model.generate(torch.tensor(prompts), attention_mask=torch.ones(2, 10, dtype=torch.long),
                              max_new_tokens=30, do_sample=False)[:, 10:]
    assert np.array_equal(onnx_greedy(tmp_path, prompts, 30, cell_type), expected.numpy())
    record = json.loads((tmp_path / RECORD_FILE).read_text())
    assert record["input_names"][:2] == ["input_ids", "hidden"] and "tokenizer.json" in record["files"]
    has_prompt_graph = cell_type in ("lstm", "gru")  # ONNX has LSTM and GRU operators; a plain RNN gets unrolled
    assert ("prompt.onnx" in record["files"]) == has_prompt_graph and bool(record["notes"]) != has_prompt_graph


README_ONNX_TOLERANCE = 1e-4
"""README, "Exporting to ONNX": onnxruntime reproduces "PyTorch's logits and states on other inputs within 1e-4"."""


@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_onnx_logits_and_states_match_pytorch_within_the_readmes_tolerance(cell_type, tmp_path):
    """Each graph against the PyTorch model itself (not the export's own check), at batches and prompt lengths
    other than those traced, the decode step chained over every position so that its error in the state adds up."""
    model, tokenizer = model_and_tokenizer(cell_type)
    export_onnx(model, tokenizer, tmp_path)
    assert TOLERANCE <= README_ONNX_TOLERANCE  # the export refuses what the README would not accept
    names = ["hidden", "cell"] if cell_type == "lstm" else ["hidden"]
    step = onnxruntime.InferenceSession(str(tmp_path / "decode_step.onnx"))
    prompt = (onnxruntime.InferenceSession(str(tmp_path / "prompt.onnx"))
              if (tmp_path / "prompt.onnx").exists() else None)
    generator = torch.Generator().manual_seed(7)
    for batch, length in ((1, 2), (3, 17), (5, 40)):
        ids = torch.randint(4, len(tokenizer), (batch, length), generator=generator)
        with torch.no_grad():
            output = model(input_ids=ids, use_cache=True)
        logits, states = output.logits.numpy(), [tensor.numpy() for tensor in output.cache.tensors]
        zeros = {name: np.zeros((model.config.num_layers, batch, model.config.hidden_size), np.float32)
                 for name in names}
        state = list(zeros.values())
        for t in range(length):
            got, *state = step.run(None, {"input_ids": ids[:, t:t + 1].numpy(), **dict(zip(names, state))})
            assert np.abs(got - logits[:, t]).max() <= README_ONNX_TOLERANCE, (batch, length, t)
        for got, expected in zip(state, states, strict=True):
            assert np.abs(got - expected).max() <= README_ONNX_TOLERANCE, (batch, length)
        if prompt is not None:
            got, *state = prompt.run(None, {"input_ids": ids.numpy(), **zeros})
            assert np.abs(got - logits[:, -1]).max() <= README_ONNX_TOLERANCE, (batch, length)
            for got, expected in zip(state, states, strict=True):
                assert np.abs(got - expected).max() <= README_ONNX_TOLERANCE, (batch, length)


def test_a_bfloat16_model_exports_in_float32_and_is_left_as_it_was(tmp_path):
    model, tokenizer = model_and_tokenizer()
    model = model.to(torch.bfloat16)
    export_onnx(model, tokenizer, tmp_path)
    assert model.dtype == torch.bfloat16
    session = onnxruntime.InferenceSession(str(tmp_path / "decode_step.onnx"))
    assert {arg.type for arg in session.get_inputs()[1:]} == {"tensor(float)"}


@pytest.mark.slow
def test_the_command_exports_and_the_readme_loop_samples_from_it(tmp_path, monkeypatch):
    model, tokenizer = model_and_tokenizer()
    model.save_pretrained(tmp_path / "outputs" / "my-model")
    tokenizer.save_pretrained(tmp_path / "outputs" / "my-model")
    monkeypatch.chdir(tmp_path)
    command = [sys.executable, "-m", "hf_charrnn.cli", "export", "outputs/my-model", "--output_dir",
               "outputs/my-model-onnx"]  # a process of its own: every warning that reaches stderr is seen
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "decode_step.onnx: onnxruntime matches PyTorch" in done.stdout and "Warning" not in done.stderr
    [loop] = python_blocks("Exporting to ONNX")
    sampled = subprocess.run([sys.executable, "-c", loop], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    assert sampled.stdout.startswith("ROMEO:") and len(sampled.stdout.rstrip("\n")) >= len("ROMEO:") + 200

    again = hf_charrnn_in_process("export", "outputs/my-model", "--output_dir", "outputs/my-model-onnx")
    assert again.returncode == 2 and "already holds an export" in again.stderr and "--overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    without = hf_charrnn_in_process("export", "outputs/my-model", "--output_dir", "elsewhere")
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
