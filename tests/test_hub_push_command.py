"""What `hf-charrnn push` uploads and refuses (hf_charrnn.hub's checks and upload set), and the command as a user runs
it: its options, its card, an `explain` page pushed beside the model; against the Hub-compatible server on 127.0.0.1
(tests/fake_hub)."""

from pathlib import Path

import pytest
from huggingface_hub import ModelCard

import hf_charrnn
from hf_charrnn.hub import PushToHubError, check_push_folder, check_repo_id, collect_upload
from testing_utils import TEXT, make_output_dir


def push_command(hub_python, folder, repo_id, *options):
    """`hf-charrnn push FOLDER REPO OPTIONS` in a process that reads the test Hub's address and token at import."""
    arguments = ["push", str(folder), repo_id, *map(str, options)]
    hub_python(f"import sys\nfrom hf_charrnn.cli import main\nsys.exit(main({arguments!r}))")


def test_checks_refuse_bad_repo_ids_and_folders(tmp_path):
    for bad in ("", "a b", "a/b/c", "x/--y", "x/y.git", "x/" + "y" * 200):
        with pytest.raises(PushToHubError):
            check_repo_id(bad)
    assert check_repo_id("someone/charrnn") == "someone/charrnn"
    with pytest.raises(PushToHubError, match="No such folder"):
        check_push_folder(tmp_path / "missing")
    folder = make_output_dir(tmp_path / "out", summary=False)
    (folder / "model.safetensors").unlink()
    with pytest.raises(PushToHubError, match="model.safetensors"):
        check_push_folder(folder)


def test_upload_set_is_the_model_not_the_run(tmp_path):
    folder = make_output_dir(tmp_path / "out")
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"x")
    (folder / "training_args.bin").write_bytes(b"pickle")
    (folder / "runs").mkdir()
    files = collect_upload(folder, "someone/x")
    assert sorted(files) == sorted([
        "README.md", "config.json", "configuration_charrnn.py", "generation_config.json", "loss_curve.png",
        "model.safetensors", "modeling_charrnn.py", "tokenizer.json", "tokenizer_config.json",
        "training_summary.json"])
    # The installed package's copies go up, whether the folder has none or an older one.
    installed = (Path(hf_charrnn.__file__).parent / "modeling_charrnn.py").read_bytes()
    (folder / "modeling_charrnn.py").unlink()
    assert Path(collect_upload(folder, "someone/x")["modeling_charrnn.py"]).read_bytes() == installed
    (folder / "modeling_charrnn.py").write_text("# an earlier version's model file\n", encoding="utf-8")
    assert Path(collect_upload(folder, "someone/x")["modeling_charrnn.py"]).read_bytes() == installed


@pytest.mark.slow
def test_the_push_command_uploads_to_a_branch_with_its_message(hub_python, hub_server, hub_repo_id, tmp_path):
    """The README's `hf-charrnn push OUTPUT REPO` as a user runs it (its options included), against the loopback
    Hub: one commit on the branch asked for, the weights byte for byte, main left alone."""
    folder = make_output_dir(tmp_path / "out")
    push_command(hub_python, folder, hub_repo_id, "--revision", "dev", "--commit-message", "first model",
                 "--license", "mit")
    [commit, *_] = hub_server.state.history(hub_repo_id, revision="dev")
    assert commit.title == "first model"
    remote = hub_server.state.files(hub_repo_id, revision="dev")
    assert remote["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    assert "license: mit" in remote["README.md"].decode()
    assert "model.safetensors" not in hub_server.state.files(hub_repo_id)  # main: the Hub's initial commit only


def test_push_command_prints_the_card_and_refuses_bad_folders(tmp_path, capsys):
    from hf_charrnn.cli.push import main

    folder = make_output_dir(tmp_path / "out")
    assert main([str(folder), "someone/x", "--print-card"]) == 0
    assert ModelCard(capsys.readouterr().out).data.library_name == "transformers"
    with pytest.raises(PushToHubError, match="it has no config.json.*Push the output folder"):
        main([str(tmp_path), "someone/x"])


def write_explain_page(folder, path):
    from hf_charrnn.cli import main as hf_charrnn_command

    assert hf_charrnn_command(["explain", str(folder), "--text", TEXT, "--output", str(path)]) == 0
    return path


def test_push_command_links_an_explain_page_from_the_card_and_refuses_other_files(tmp_path, capsys):
    from hf_charrnn.cli.push import main

    folder = make_output_dir(tmp_path / "out")
    page = write_explain_page(folder, tmp_path / "page.html")
    capsys.readouterr()
    assert main([str(folder), "someone/x", "--print-card", "--explain-report", str(page), "--revision", "v1"]) == 0
    card = capsys.readouterr().out
    assert "## Inside the model" in card
    assert "[`explain.html`](https://huggingface.co/someone/x/resolve/v1/explain.html?download=true)" in card
    assert "## Inside the model" not in str(collect_upload(folder, "someone/x")["README.md"], "utf-8")
    notes = tmp_path / "notes.html"
    notes.write_text("<p>notes</p>", encoding="utf-8")
    for wrong in (notes, tmp_path / "missing.html"):
        with pytest.raises(PushToHubError, match="not a page written by `hf-charrnn explain`"):
            collect_upload(folder, "someone/x", explain_report=wrong)
    other = write_explain_page(make_output_dir(tmp_path / "other", seed=1), tmp_path / "other.html")
    with pytest.raises(PushToHubError, match="made with another model than the one in"):
        collect_upload(folder, "someone/x", explain_report=other)


@pytest.mark.slow
def test_push_with_an_explain_page_uploads_it_beside_the_model(hub_python, hub_server, hub_repo_id, tmp_path):
    """Pushed under a bare name, so the card (its snippets and the page's link) names the token's namespace."""
    folder = make_output_dir(tmp_path / "out")
    page = write_explain_page(folder, tmp_path / "page.html")
    push_command(hub_python, folder, hub_repo_id.split("/")[1], "--explain-report", page)
    assert "explain.html" in hub_server.state.history(hub_repo_id)[0].payload["uploaded"]
    remote = hub_server.state.files(hub_repo_id)
    assert remote["explain.html"] == page.read_bytes()
    link = f"{hub_server.endpoint}/{hub_repo_id}/resolve/main/explain.html?download=true"
    assert f"[`explain.html`]({link})" in remote["README.md"].decode("utf-8")
    assert f'repo_id = "{hub_repo_id}"' in remote["README.md"].decode("utf-8")
