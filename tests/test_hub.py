"""Publishing to and loading from the Hub, against the loopback Hub of tests/fake_hub/.

Pushes and pulls run in child processes pointed at the server with HF_ENDPOINT (see
tests/fake_hub/fixtures.py); this process builds tiny models and compares results bit for bit.
"""

import json
import re
from pathlib import Path

import pytest

import hf_charrnn
from hf_charrnn import CharRNNForCausalLM
from testing_utils import PROMPT, TEXT, assert_same_weights, make_output_dir

try:
    from fake_hub.fixtures import BLOCK_PACKAGE, run_python
except ImportError:  # tests/ imported as a package
    from tests.fake_hub.fixtures import BLOCK_PACKAGE, run_python


PULL = """
import json, sys
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer
kwargs = dict(revision={revision!r}, trust_remote_code={remote!r})
tokenizer = AutoTokenizer.from_pretrained({repo!r}, **kwargs)
model = AutoModelForCausalLM.from_pretrained({repo!r}, **kwargs)
inputs = tokenizer({prompt!r}, return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
save_file({{k: v.contiguous() for k, v in model.state_dict().items()}}, {weights!r})
print("RESULT " + json.dumps({{"tokens": out[0].tolist(), "module": type(model).__module__}}))
"""


def greedy_reference(folder):
    model = CharRNNForCausalLM.from_pretrained(folder).eval()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    inputs = tokenizer(PROMPT, return_tensors="pt")
    return model.generate(**inputs, max_new_tokens=12, do_sample=False)[0].tolist()


def push(hub_python, folder, repo_id, env=None, **kwargs):
    out = hub_python(f"""
from hf_charrnn.hub import push_output_dir
info = push_output_dir({str(folder)!r}, {repo_id!r}, **{kwargs!r})
print("OID", info.oid)
""", env=env)
    return out.stdout.split("OID ")[-1].strip()


def pull(hub_python, repo_id, weights_path, *, revision=None, remote=False, env=None, cwd=None):
    code = (BLOCK_PACKAGE if remote else "import hf_charrnn\n") + PULL.format(
        repo=repo_id, revision=revision, remote=remote, prompt=PROMPT, weights=str(weights_path))
    out = hub_python(code, env=env, isolated=remote, cwd=cwd)
    return json.loads(out.stdout.split("RESULT ")[-1])


@pytest.fixture(scope="module")
def pushed(hub_server, tmp_path_factory):
    """One model pushed once, for the tests that only read it."""
    root = tmp_path_factory.mktemp("pushed")
    folder = make_output_dir(root / "out")
    repo_id = f"{hub_server.user}/charrnn-shared"
    env = hub_server.env(hf_home=root / "hf_home")
    run_python(f"""
from hf_charrnn.hub import push_output_dir
push_output_dir({str(folder)!r}, {repo_id!r})
""", env)
    return {"folder": folder, "repo_id": repo_id, "greedy": greedy_reference(folder)}


# ------------------------------------------------------------------------------------------
# Push and pull round trips
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_push_is_one_commit_and_pull_matches_bit_for_bit(hub_python, hub_server, hub_repo_id, tmp_path):
    folder = make_output_dir(tmp_path / "out")
    oid = push(hub_python, folder, hub_repo_id)
    history = hub_server.state.history(hub_repo_id)
    assert [c.oid for c in history][0] == oid and len(history) == 2  # the Hub's initial commit + one push
    assert sorted(history[0].payload["uploaded"]) == sorted([
        "README.md", "config.json", "configuration_charrnn.py", "generation_config.json", "loss_curve.png",
        "model.safetensors", "modeling_charrnn.py", "tokenizer.json", "tokenizer_config.json",
        "training_summary.json"])
    remote = hub_server.state.files(hub_repo_id)
    for name in ("model.safetensors", "tokenizer.json", "modeling_charrnn.py", "loss_curve.png"):
        assert remote[name] == (folder / name).read_bytes(), name

    result = pull(hub_python, hub_repo_id, tmp_path / "pulled.safetensors")
    assert result["module"] == "hf_charrnn.modeling_charrnn"
    assert result["tokens"] == greedy_reference(folder)
    assert_same_weights(tmp_path / "pulled.safetensors", folder)


@pytest.mark.slow
def test_pull_without_the_package_runs_remote_code_and_reloads_offline(hub_python, hub_env, pushed, tmp_path):
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = pull(hub_python, pushed["repo_id"], tmp_path / "remote.safetensors", remote=True, cwd=workdir)
    assert result["module"].startswith("transformers_modules."), result["module"]
    assert result["tokens"] == pushed["greedy"]
    assert_same_weights(tmp_path / "remote.safetensors", pushed["folder"])

    # Same HF_HOME, no network: the cache (files and remote-code modules) is enough.
    offline = {**hub_env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    result = pull(hub_python, pushed["repo_id"], tmp_path / "offline.safetensors", remote=True, cwd=workdir,
                  env=offline)
    assert result["tokens"] == pushed["greedy"]
    assert_same_weights(tmp_path / "offline.safetensors", pushed["folder"])
    result = pull(hub_python, pushed["repo_id"], tmp_path / "offline2.safetensors", env=offline)
    assert result["module"] == "hf_charrnn.modeling_charrnn" and result["tokens"] == pushed["greedy"]


@pytest.mark.slow
def test_branch_push_and_pull_by_revision(hub_python, hub_server, hub_repo_id, tmp_path):
    main_folder = make_output_dir(tmp_path / "main", seed=1)
    dev_folder = make_output_dir(tmp_path / "dev", seed=2, cell_type="gru")
    main_oid = push(hub_python, main_folder, hub_repo_id)
    dev_oid = push(hub_python, dev_folder, hub_repo_id, revision="dev")
    assert hub_server.state.head(hub_repo_id) == main_oid
    assert hub_server.state.head(hub_repo_id, "dev") == dev_oid
    assert hub_server.state.history(hub_repo_id, "dev")[1].oid == main_oid  # branched from main

    dev = pull(hub_python, hub_repo_id, tmp_path / "dev.safetensors", revision="dev")
    assert dev["tokens"] == greedy_reference(dev_folder)
    assert_same_weights(tmp_path / "dev.safetensors", dev_folder)
    main = pull(hub_python, hub_repo_id, tmp_path / "main.safetensors")
    assert main["tokens"] == greedy_reference(main_folder)
    assert_same_weights(tmp_path / "main.safetensors", main_folder)


@pytest.mark.slow
def test_pipeline_text_generation_from_the_hub(hub_python, pushed):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(pushed["folder"])
    expected = tokenizer.decode(pushed["greedy"], skip_special_tokens=True)
    out = hub_python(f"""
import json
import hf_charrnn
from transformers import pipeline
generator = pipeline("text-generation", model={pushed["repo_id"]!r})
result = generator({PROMPT!r}, max_new_tokens=12, do_sample=False)
print("TEXT " + json.dumps(result[0]["generated_text"]))
""")
    assert json.loads(out.stdout.split("TEXT ")[-1]) == expected


@pytest.mark.slow
def test_missing_repo_file_and_revision_raise_hub_errors(hub_python, pushed):
    out = hub_python(f"""
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from transformers import AutoModelForCausalLM
import hf_charrnn

def chain(error):
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__

cases = {{
    "download missing repo": (lambda: hf_hub_download("{pushed["repo_id"]}-nope", "config.json"),
                              RepositoryNotFoundError),
    "download missing file": (lambda: hf_hub_download({pushed["repo_id"]!r}, "nope.bin"), EntryNotFoundError),
    "model missing repo": (lambda: AutoModelForCausalLM.from_pretrained("{pushed["repo_id"]}-nope"),
                           RepositoryNotFoundError),
    "model missing revision": (lambda: AutoModelForCausalLM.from_pretrained({pushed["repo_id"]!r}, revision="nope"),
                               RevisionNotFoundError),
}}
for name, (call, expected) in cases.items():
    try:
        call()
        print("NO ERROR", name)
    except Exception as error:
        found = any(isinstance(e, expected) for e in chain(error))
        print("OK" if found else "WRONG", name, type(error).__name__)
""")
    lines = [line for line in out.stdout.splitlines() if line.split(" ")[0] in ("OK", "WRONG", "NO")]
    assert len(lines) == 4 and all(line.startswith("OK") for line in lines), out.stdout


@pytest.mark.slow
def test_pushing_again_uploads_only_what_changed(hub_python, hub_server, hub_repo_id, tmp_path):
    folder = make_output_dir(tmp_path / "out")
    out = hub_python(f"""
from safetensors.torch import load_file, save_file
from hf_charrnn.hub import push_output_dir
first = push_output_dir({str(folder)!r}, {hub_repo_id!r}).oid
again = push_output_dir({str(folder)!r}, {hub_repo_id!r}).oid
weights = load_file({str(folder / "model.safetensors")!r})
weights = {{k: v + 0.25 if k.endswith("bias") else v for k, v in weights.items()}}
save_file(weights, {str(folder / "model.safetensors")!r}, metadata={{"format": "pt"}})
third = push_output_dir({str(folder)!r}, {hub_repo_id!r}).oid
print("OIDS", first, again, third)
""")
    first, again, third = out.stdout.split("OIDS ")[-1].split()
    assert again == first and third != first
    history = hub_server.state.history(hub_repo_id)
    assert [c.oid for c in history[:2]] == [third, first] and len(history) == 3
    assert history[0].payload == {"uploaded": ["model.safetensors"], "deleted": []}
    assert hub_server.state.files(hub_repo_id)["model.safetensors"] == (folder / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_failed_push_leaves_the_remote_at_its_previous_commit(hub_python, hub_server, hub_repo_id, tmp_path):
    first_folder = make_output_dir(tmp_path / "first", seed=1)
    first = push(hub_python, first_folder, hub_repo_id)
    before = hub_server.state.files(hub_repo_id)
    second_folder = make_output_dir(tmp_path / "second", seed=2, cell_type="gru")
    hub_server.state.fail_commits(times=1, status=500, after_lines=3)  # dies midway through the payload
    try:
        out = hub_python(f"""
from huggingface_hub.errors import HfHubHTTPError
from hf_charrnn.hub import push_output_dir
try:
    push_output_dir({str(second_folder)!r}, {hub_repo_id!r})
    print("PUSHED")
except HfHubHTTPError as error:
    print("FAILED", error.response.status_code)
""")
    finally:
        hub_server.state.clear_failures()
    assert "FAILED 500" in out.stdout
    assert hub_server.state.head(hub_repo_id) == first
    assert hub_server.state.files(hub_repo_id) == before


@pytest.mark.slow
def test_bad_repo_id_missing_token_and_non_model_folder_fail_before_upload(hub_python, hub_server, tmp_path):
    folder = make_output_dir(tmp_path / "out")
    (tmp_path / "empty").mkdir()
    no_tokenizer = make_output_dir(tmp_path / "no_tok")
    (no_tokenizer / "tokenizer.json").unlink()
    user = hub_server.user
    cases = {
        "bad id": (str(folder), "bad id with spaces", {}),
        "too many slashes": (str(folder), f"{user}/a/b", {}),
        "double dash": (str(folder), f"{user}/--x", {}),
        "empty folder": (str(tmp_path / "empty"), f"{user}/x", {}),
        "no folder": (str(tmp_path / "missing"), f"{user}/x", {}),
        "no tokenizer": (str(no_tokenizer), f"{user}/x", {}),
        "bad branch": (str(folder), f"{user}/x", {"revision": "a..b"}),
    }
    code = """
import json, sys
from hf_charrnn.hub import PushToHubError, push_output_dir
cases = json.loads(sys.argv[1])
for name, (folder, repo_id, kwargs) in cases.items():
    try:
        push_output_dir(folder, repo_id, **kwargs)
        print("PUSHED", name)
    except PushToHubError as error:
        print("REFUSED", name, "::", str(error).replace("\\n", " "))
"""
    before = len(hub_server.state.requests)
    out = hub_python(code, args=[json.dumps(cases)])
    refused = {line.split(" ::")[0][len("REFUSED "):] for line in out.stdout.splitlines() if line.startswith("REFUSED")}
    assert refused == set(cases), out.stdout
    assert "tokenizer.json" in out.stdout
    assert hub_server.state.requests[before:] == []  # nothing reached the Hub

    # No token at all (fresh HF_HOME, no HF_TOKEN), and a token the Hub rejects.
    no_token = hub_server.env(hf_home=tmp_path / "no_token_home", token=None)
    bad_token = hub_server.env(hf_home=tmp_path / "bad_token_home", token="hf_not_a_real_token")
    for env, expected in ((no_token, "No Hugging Face token"), (bad_token, "rejected the token")):
        out = hub_python(code, env=env, args=[json.dumps({"token": (str(folder), f"{user}/tok-check", {})})])
        assert "REFUSED token" in out.stdout and expected in out.stdout, out.stdout
    assert not any(method == "POST" for method, _, _ in hub_server.state.requests[before:])
    assert (hub_server.state.repos.get(("model", f"{user}/tok-check"))) is None


@pytest.mark.slow
def test_model_card_snippets_run_as_written(hub_python, hub_server, pushed, tmp_path):
    readme = hub_server.state.files(pushed["repo_id"])["README.md"].decode()
    snippets = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(snippets) == 2
    without_package, with_package = snippets
    workdir = tmp_path / "user"
    workdir.mkdir()
    out = hub_python(BLOCK_PACKAGE + without_package, isolated=True, cwd=workdir)
    assert out.stdout.startswith(PROMPT)
    out = hub_python(with_package, cwd=workdir)
    assert out.stdout.startswith(PROMPT)


@pytest.mark.slow
def test_pull_a_pushed_model_through_olah(hub_python, hub_server, olah_mirror, pushed, tmp_path):
    """olah (a third-party Hub mirror, offline) serves the pushed repo, copied into a local git mirror.

    snapshot_download through olah fetches the repo; the model then loads from the snapshot.
    Loading by repo id through olah does not work: olah 0.5.4 offline answers a file or folder
    that does not exist with 401 RepoNotFound instead of 404 EntryNotFound, and transformers
    probes optional files (tokenizer.model, additional_chat_templates/, ...) and re-raises a
    RepositoryNotFoundError.
    """
    files = hub_server.state.files(pushed["repo_id"])
    sha = olah_mirror.add_repo(pushed["repo_id"], files, message="mirror of the test Hub repo")
    env = olah_mirror.env(tmp_path / "olah_home")
    weights = tmp_path / "olah.safetensors"
    out = hub_python(f"""
import json
import hf_charrnn
from huggingface_hub import snapshot_download
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer
folder = snapshot_download({pushed["repo_id"]!r})
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder)
out = model.generate(**tokenizer({PROMPT!r}, return_tensors="pt"), max_new_tokens=12, do_sample=False)
save_file({{k: v.contiguous() for k, v in model.state_dict().items()}}, {str(weights)!r})
print("RESULT " + json.dumps({{"tokens": out[0].tolist(), "folder": folder}}))
""", env=env)
    result = json.loads(out.stdout.split("RESULT ")[-1])
    assert sha in result["folder"]
    assert result["tokens"] == pushed["greedy"]
    assert_same_weights(weights, pushed["folder"])


@pytest.mark.slow
def test_trainer_push_to_hub_uploads_the_finished_model_in_one_commit(hub_python, hub_server, hub_repo_id, tmp_path):
    """`hf-charrnn train --push_to_hub --hub_model_id` pushes the output folder once, at the end, without checkpoints."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 40, encoding="utf-8")
    output_dir = tmp_path / "run"
    hub_python(f"""
import sys
from hf_charrnn.cli import main
sys.exit(main(["train", "--train_file", {str(corpus)!r}, "--validation_split_fraction", "0.2",
               "--output_dir", {str(output_dir)!r}, "--max_steps", "4", "--save_steps", "2", "--eval_steps", "2",
               "--hidden_size", "16", "--embedding_dim", "8", "--num_layers", "1", "--block_size", "32",
               "--per_device_train_batch_size", "4", "--report_to", "none",
               "--push_to_hub", "--hub_model_id", {hub_repo_id!r}]))
""")
    assert len(hub_server.state.history(hub_repo_id)) == 2  # the Hub's initial commit + one push
    files = set(hub_server.state.files(hub_repo_id))
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "README.md",
            "modeling_charrnn.py", "training_summary.json", "loss_curve.png"} <= files
    assert not any(name.startswith("checkpoint-") for name in files)
    pulled = pull(hub_python, hub_repo_id, tmp_path / "pulled.safetensors")
    assert pulled["tokens"] == greedy_reference(output_dir)
    assert_same_weights(tmp_path / "pulled.safetensors", output_dir)


@pytest.mark.slow
def test_generate_and_evaluate_commands_take_a_hub_id(hub_python, pushed, tmp_path):
    from transformers import AutoTokenizer

    from hf_charrnn import CharRNNForCausalLM
    from hf_charrnn.evaluation import evaluate_dataset

    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    out = hub_python(f"""
from hf_charrnn.cli import main
assert main(["generate", {pushed["repo_id"]!r}, "--prompt", {PROMPT!r}, "--greedy", "--max_new_tokens", "12"]) == 0
print("JSON-FOLLOWS")
assert main(["evaluate", {pushed["repo_id"]!r}, "--text_file", {str(text_file)!r}]) == 0
""")
    generated, scores = out.stdout.split("JSON-FOLLOWS\n")
    tokenizer = AutoTokenizer.from_pretrained(pushed["folder"])
    assert generated.rstrip("\n") == tokenizer.decode(pushed["greedy"], skip_special_tokens=True).rstrip("\n")
    expected = evaluate_dataset(CharRNNForCausalLM.from_pretrained(pushed["folder"]), tokenizer, [{"text": TEXT}])
    assert json.loads(scores)["bpc"] == pytest.approx(expected["bpc"], rel=1e-5)


@pytest.mark.slow
def test_loading_a_repo_whose_model_file_is_an_earlier_one_says_so_and_a_push_refreshes_it(hub_python, hub_server,
                                                                                            hub_repo_id, tmp_path):
    """A repo pushed by an earlier version carries that version's model file: its users with trust_remote_code run
    it. generate names it, with the refresh command; pushing again (with the installed package) replaces it."""
    folder = make_output_dir(tmp_path / "out")
    push(hub_python, folder, hub_repo_id)
    installed = (Path(hf_charrnn.__file__).parent / "modeling_charrnn.py").read_bytes()
    generate = f"""
from hf_charrnn.cli import main
assert main(["generate", {hub_repo_id!r}, "--prompt", {PROMPT!r}, "--greedy", "--max_new_tokens", "4"]) == 0
"""
    assert "differs from the installed" not in hub_python(generate).stderr
    earlier_copy = installed.replace(b"class CharRNNCache:", b"class CharRNNCache:  # 0.0")
    hub_python(f"""
from huggingface_hub import HfApi
HfApi().upload_file(path_or_fileobj={earlier_copy!r}, path_in_repo="modeling_charrnn.py", repo_id={hub_repo_id!r})
""")
    earlier = hub_python(generate).stderr
    assert f"warning: {hub_repo_id} carries model code (modeling_charrnn.py) that differs from the installed" in earlier
    assert f"`hf-charrnn push FOLDER {hub_repo_id}`" in earlier
    push(hub_python, folder, hub_repo_id)
    assert hub_server.state.files(hub_repo_id)["modeling_charrnn.py"] == installed
    assert "differs from the installed" not in hub_python(generate).stderr
