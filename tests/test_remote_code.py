"""A saved folder loads with trust_remote_code=True in a process where hf_charrnn cannot be imported."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import hf_charrnn
from testing_utils import PROMPT, hf_charrnn_in_process, make_output_dir, tiny_model

LOAD_WITHOUT_PACKAGE = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class HideHfCharrnn(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] == "hf_charrnn":
                raise ModuleNotFoundError(f"No module named {name!r}")

    sys.meta_path.insert(0, HideHfCharrnn())
    try:
        import hf_charrnn
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("hf_charrnn is importable: the test would prove nothing")

    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    folder, prompt = sys.argv[1], json.loads(sys.argv[2])
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
    base = AutoModel.from_pretrained(folder, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    tokens = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=12)
    print(json.dumps({"tokens": tokens.tolist(), "classes": [type(model).__name__, type(base).__name__]}))
    """
)


@pytest.mark.parametrize("cell_type", ["lstm", "rnn_relu"])
def test_saved_folder_generates_the_same_tokens_without_the_package(tmp_path, cell_type):
    model = tiny_model(cell_type=cell_type, tie_word_embeddings=True)
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    assert {"configuration_charrnn.py", "modeling_charrnn.py"} <= {p.name for p in folder.iterdir()}
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForCausalLM"] == "modeling_charrnn.CharRNNForCausalLM"

    prompt = [5, 9, 13, 7]
    expected = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=12).tolist()
    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_PACKAGE, str(folder), json.dumps(prompt)],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["classes"] == ["CharRNNForCausalLM", "CharRNNModel"]
    assert loaded["tokens"] == expected


def test_loading_a_checkpoint_with_an_earlier_model_file_says_so_with_the_refresh_command(tmp_path):
    """What remote-code users of a checkpoint run is its copy of the model file: the commands that load one name a
    copy that is not the installed package's, and push uploads the installed one (tests/test_hub.py)."""
    folder = make_output_dir(tmp_path / "out")
    args = ("generate", folder, "--prompt", PROMPT, "--max_new_tokens", "4", "--greedy")
    current = hf_charrnn_in_process(*args)
    assert current.returncode == 0 and "differs from the installed" not in current.stderr
    installed = (Path(hf_charrnn.__file__).parent / "modeling_charrnn.py").read_text(encoding="utf-8")
    (folder / "modeling_charrnn.py").write_text(installed.replace("class CharRNNCache:", "class CharRNNCache:  # 0.0"),
                                                encoding="utf-8")
    earlier = hf_charrnn_in_process(*args)
    assert earlier.returncode == 0 and earlier.stdout == current.stdout  # this machine runs the installed code
    assert f"warning: {folder} carries model code (modeling_charrnn.py) that differs from the installed" in \
        earlier.stderr
    assert f"`hf-charrnn push {folder} USER/REPO`" in earlier.stderr
