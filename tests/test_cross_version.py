"""A checkpoint pushed with remote code under one transformers release works under the other end of the range.

Every published checkpoint carries modeling_charrnn.py as remote code, and its users run whatever transformers they
have. So a model pushed from one virtual environment (this one) is pulled from a second one (its interpreter given by
HF_CHARRNN_OTHER_PYTHON, with the other end of the supported range installed) and the other way round, through the
loopback Hub, with hf_charrnn imported and with it blocked (the checkpoint's own code then runs). The tokens must be
those the pushing side generated: greedy, seeded sampling, and a continuation from a returned cache.

`make test-cross-version` (run by CI) builds both environments and sets the variable; without it the tests skip.
"""

import json
import os
import sys

import pytest

try:
    from fake_hub.fixtures import BLOCK_PACKAGE, run_python
except ImportError:  # tests/ imported as a package
    from tests.fake_hub.fixtures import BLOCK_PACKAGE, run_python

OTHER_PYTHON = os.environ.get("HF_CHARRNN_OTHER_PYTHON")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not OTHER_PYTHON,
        reason="needs HF_CHARRNN_OTHER_PYTHON: the python of a venv with the other end of the transformers range "
        "(make test-cross-version sets it)",
    ),
]

TEXT = "ROMEO: But soft, what light through yonder window breaks?\nJULIET: Ay me! O Romeo, Romeo!\n"

# Generation the pushing and the pulling side both run; `model` and `tokenizer` are defined before it.
GENERATE = """
import json, transformers
from transformers import set_seed
inputs = tokenizer("ROMEO:", return_tensors="pt")
greedy = model.generate(**inputs, do_sample=False, max_new_tokens=16)
set_seed(11)
sampled = model.generate(**inputs, do_sample=True, temperature=1.5, max_new_tokens=16)
set_seed(11)
first = model.generate(**inputs, do_sample=True, temperature=1.5, max_new_tokens=6, return_dict_in_generate=True)
continued = model.generate(first.sequences, cache=first.cache, do_sample=True, temperature=1.5, max_new_tokens=10)
print("RESULT " + json.dumps({
    "transformers": transformers.__version__, "module": type(model).__module__,
    "greedy": greedy[0].tolist(), "sampled": sampled[0].tolist(), "continued": continued[0].tolist(),
}))
"""

PUSH = """
import torch
import hf_charrnn
from hf_charrnn import CharRNNConfig, CharRNNForCausalLM
from hf_charrnn.tokenization_charrnn import build_char_tokenizer
tokenizer = build_char_tokenizer([{text!r}])
torch.manual_seed(0)
config = CharRNNConfig(vocab_size=len(tokenizer), cell_type={cell_type!r}, hidden_size=16, embedding_dim=8)
model = CharRNNForCausalLM(config).eval()
with torch.no_grad():  # larger weights: the tokens then depend on every weight and on the carried state
    for parameter in model.parameters():
        parameter.mul_(5.0)
model.push_to_hub({repo!r})
tokenizer.push_to_hub({repo!r})
"""

PULL = """
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained({repo!r}, trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained({repo!r}, trust_remote_code=True).eval()
"""


def result_of(process) -> dict:
    return json.loads(process.stdout.split("RESULT ")[-1])


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
@pytest.mark.parametrize("direction", ["pushed-here", "pushed-there"])
def test_a_checkpoint_pushed_under_one_release_generates_the_same_under_the_other(
    hub_env, hub_repo_id, tmp_path, cell_type, direction
):
    here, there = sys.executable, OTHER_PYTHON
    pusher, puller = (here, there) if direction == "pushed-here" else (there, here)
    pushed = result_of(run_python(
        PUSH.format(text=TEXT, cell_type=cell_type, repo=hub_repo_id) + GENERATE, hub_env, python=pusher
    ))

    outside = tmp_path / "elsewhere"  # not the repository: hf_charrnn is importable only as installed
    outside.mkdir()
    with_package = result_of(run_python(
        "import hf_charrnn\n" + PULL.format(repo=hub_repo_id) + GENERATE, hub_env, python=puller, cwd=outside
    ))
    without_package = result_of(run_python(
        BLOCK_PACKAGE + PULL.format(repo=hub_repo_id) + GENERATE, hub_env, python=puller, cwd=outside, isolated=True
    ))

    assert with_package["transformers"] != pushed["transformers"], "both environments have the same release"
    assert with_package["module"] == "hf_charrnn.modeling_charrnn"
    assert without_package["module"].startswith("transformers_modules")
    for pulled in (with_package, without_package):
        for kind in ("greedy", "sampled", "continued"):
            assert pulled[kind] == pushed[kind], (kind, pushed["transformers"], pulled["transformers"])
