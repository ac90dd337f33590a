"""Run safety and user mistakes, through the `hf-charrnn` command as a user meets them: its own entry point in this
process, and a process of its own where the process is the point (signals, a live lock holder, settings read at
import, all of its stderr).

Each case asserts the message a user reads and, for mistakes, that nothing in the output folder changed.
"""

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from unittest import mock

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from testing_utils import (
    free_port,
    hf_charrnn_in_process,
    hf_charrnn_process,
    start_hf_charrnn,
    tiny_model,
    verse,
    wait_for,
)
from hf_charrnn.run_folder import LOCK_FILE, RUN_FILE
from hf_charrnn.tokenization_charrnn import build_char_tokenizer

pytestmark = pytest.mark.slow

PATHS = ["train", "train-accelerate"]
TINY = ["--hidden_size", "16", "--embedding_dim", "8", "--num_layers", "1", "--report_to", "none",
        "--disable_tqdm", "true"]
TINY_TRAINER = ["--block_size", "16", "--per_device_train_batch_size", "8", "--eval_steps", "2", "--save_steps", "2",
                "--logging_steps", "1", "--sample_every_steps", "0", "--max_eval_samples", "8"]
TINY_BPTT = ["--batch_size", "4", "--block_size", "16", "--eval_steps", "2", "--save_steps", "2",
             "--logging_steps", "1", "--sample_every_steps", "0", "--eval_batch_size", "2", "--max_eval_tokens", "200"]


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("texts")
    files = {"first": verse(0, 300), "second": verse(1, 300)}
    paths = {}
    for name, text in files.items():
        paths[name] = folder / f"{name}.txt"
        paths[name].write_text(text, encoding="utf-8")
    return paths


def hf_charrnn(*args: str, env: dict | None = None, cwd=None, process: bool = False) -> subprocess.CompletedProcess:
    """`hf-charrnn ARGS` in this process (`env` set for the call, in `cwd`), or with `process` in one of its own."""
    if process:
        return hf_charrnn_process(*args, env=env, cwd=cwd)
    with mock.patch.dict(os.environ, env or {}), contextlib.chdir(cwd or os.getcwd()):
        return hf_charrnn_in_process(*args)


def train_args(path: str, train_file: Path, output_dir: Path, *extra: str) -> list[str]:
    tiny = TINY_TRAINER if path == "train" else TINY_BPTT
    return [path, "--train_file", train_file, "--output_dir", output_dir, *TINY, *tiny, *extra]


def snapshot(folder: Path) -> dict | None:
    """Every file under `folder` with its size and modification time (None: the folder does not exist)."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "bug" not in result.stderr, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr[-3000:])


# ----------------------------------------------------------------------------------------------------------------------
# An output folder belongs to one run
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_another_run_in_the_folder_is_refused_and_a_finished_one_not_retrained(path, texts, tmp_path):
    output_dir = tmp_path / "out"
    first = hf_charrnn(*train_args(path, texts["first"], output_dir, "--max_steps", "4"))
    assert first.returncode == 0, first.stderr[-3000:]
    before = snapshot(output_dir)

    other_text = hf_charrnn(*train_args(path, texts["second"], output_dir, "--max_steps", "4"))
    assert_user_error(other_text, "holds another run", "data.train_file", "--overwrite_output_dir", f"{output_dir}-2")
    bigger = hf_charrnn(*train_args(path, texts["first"], output_dir, "--max_steps", "4", "--hidden_size", "24"))
    assert_user_error(bigger, "model.hidden_size: 16 -> 24")
    again = hf_charrnn(*train_args(path, texts["first"], output_dir, "--max_steps", "4"))
    assert again.returncode == 0 and "already complete (4 steps" in again.stdout
    assert "--resume_from_checkpoint latest and a larger --max_steps" in again.stdout
    assert snapshot(output_dir) == before  # nothing trained, rotated or rewritten

    restart = hf_charrnn(*train_args(path, texts["second"], output_dir, "--max_steps", "2", "--overwrite_output_dir"))
    assert restart.returncode == 0, restart.stderr[-3000:]
    record = json.loads((output_dir / RUN_FILE).read_text())
    assert record["status"] == "complete" and record["identity"]["data"]["train_file"][0]["path"].endswith("second.txt")


@pytest.mark.parametrize("path", PATHS)
def test_sigterm_then_rerun_resumes_and_ends_with_a_summary_after_rotation(path, texts, tmp_path):
    output_dir = tmp_path / "out"
    keep_one = ["--save_total_limit", "1", "--max_steps", "400", "--save_steps", "5", "--eval_steps", "200"]
    process = start_hf_charrnn(*train_args(path, texts["first"], output_dir, *keep_one))
    wait_for(output_dir / "checkpoint-*", process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 143, output[-3000:]
    assert "SIGTERM" in output and "Ctrl-C again" not in output
    assert not (output_dir / LOCK_FILE).exists()  # given back on the way out

    resumed = hf_charrnn(*train_args(path, texts["first"], output_dir, *keep_one))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((output_dir / "training_summary.json").read_text())
    assert summary["steps"] == 400 and "checkpoint-" in summary["resumed_from"]
    assert not Path(summary["resumed_from"]).exists()  # rotated away, and the summary was still written
    assert summary["train_loss_covers"].startswith("steps 1-400") and summary["train_loss"] > 0


def test_a_live_run_keeps_a_second_one_out_and_a_killed_one_is_taken_over(texts, tmp_path):
    output_dir = tmp_path / "out"
    argv = train_args("train", texts["first"], output_dir, "--max_steps", "400", "--save_steps", "5")
    first = start_hf_charrnn(*argv)
    wait_for(output_dir / "checkpoint-5", first)  # long before step 400
    second = hf_charrnn(*argv)
    assert_user_error(second, f"Another run (pid {first.pid}", "is training into")
    first.kill()  # kill -9: the lock stays behind with a dead pid
    first.communicate()
    assert (output_dir / LOCK_FILE).exists()
    third = hf_charrnn(*argv)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "Taking over" in third.stdout + third.stderr and "Resuming from" in third.stdout + third.stderr


def test_a_damaged_bptt_state_file_is_named_and_the_previous_checkpoint_used(texts, tmp_path):
    output_dir = tmp_path / "out"
    done = hf_charrnn(*train_args("train-accelerate", texts["first"], output_dir, "--max_steps", "4",
                                  "--save_total_limit", "5"))
    assert done.returncode == 0, done.stderr[-3000:]
    state_file = output_dir / "checkpoint-4" / "bptt_state.json"
    state_file.write_text(state_file.read_text()[:40])  # cut short, as by a crash mid-write before the atomic writes
    longer = hf_charrnn(*train_args("train-accelerate", texts["first"], output_dir, "--max_steps", "6",
                                    "--save_total_limit", "5", "--resume_from_checkpoint", "latest"))
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert str(state_file) in longer.stderr + longer.stdout
    assert "Resumed from" in longer.stdout and "checkpoint-2 at step 2" in longer.stdout


def test_a_pickled_rng_state_is_refused_by_name(texts, tmp_path):
    output_dir = tmp_path / "out"
    argv = train_args("train", texts["first"], output_dir, "--max_steps", "60", "--save_steps", "5")
    process = start_hf_charrnn(*argv)
    wait_for(output_dir / "checkpoint-5" / "trainer_state.json", process)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    checkpoint = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    torch.save({"python": os.system}, checkpoint / "rng_state.pth")  # a pickled reference to a function
    result = hf_charrnn(*argv)
    assert_user_error(result, "rng_state.pth", "never runs pickled code")


# ----------------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_unreadable_data_and_zero_steps_are_clear_errors_that_write_nothing(path, texts, tmp_path):
    output_dir = tmp_path / "out"
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Voilà une ligne.\n".encode("latin-1") * 50)
    binary = tmp_path / "data.txt"
    binary.write_bytes(bytes(range(256)) * 20)
    one = tmp_path / "one.txt"
    one.write_text("x", encoding="utf-8")
    assert_user_error(hf_charrnn(*train_args(path, latin1, output_dir, "--max_steps", "2")),
                      "is not UTF-8 text: byte 4 (0xe0", "iconv -f latin1 -t utf-8")
    assert_user_error(hf_charrnn(*train_args(path, binary, output_dir, "--max_steps", "2")), "is a binary file")
    assert_user_error(hf_charrnn(*train_args(path, texts["first"], output_dir, "--max_steps", "0")),
                      "--max_steps 0 would train nothing")
    tiny_text = hf_charrnn(*train_args(path, one, output_dir, "--max_steps", "2"))
    assert_user_error(tiny_text, "too short")
    assert "--validation_fraction" not in tiny_text.stderr
    assert snapshot(output_dir) is None


@pytest.mark.parametrize("path", PATHS)
def test_text_without_line_breaks_is_split_by_characters(path, tmp_path):
    flat = tmp_path / "flat.txt"
    flat.write_text(verse(2, 400).replace("\n", " "), encoding="utf-8")
    result = hf_charrnn(*train_args(path, flat, tmp_path / "out", "--max_steps", "2"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "training_summary.json").read_text())["validation_tokens"] > 0


def test_jsonl_files_are_read_by_column_like_run_clm(tmp_path):
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps({"id": i, "content": verse(i, 20)}) + "\n" for i in range(40)),
                       encoding="utf-8")
    output_dir = tmp_path / "out"
    result = hf_charrnn(*train_args("train", records, output_dir, "--max_steps", "2", "--text_column", "content"))
    assert result.returncode == 0, result.stderr[-3000:]
    vocabulary = AutoTokenizer.from_pretrained(output_dir).get_vocab()
    assert "k" in vocabulary and "{" not in vocabulary and '"' not in vocabulary  # the text, not the JSON
    missing = hf_charrnn(*train_args("train", records, tmp_path / "out2", "--max_steps", "2"))
    assert_user_error(missing, "has no column 'text'", "content")


def option_help(help_text: str) -> dict[str, str]:
    """Each option's help, from its "  --name ..." line to the next option, as one string."""
    options, name = {}, None
    for line in help_text.splitlines():
        if line.startswith("  -"):
            name = line.split()[0].rstrip(",")
            options[name] = line
        elif name and line.startswith("    "):
            options[name] += " " + line.strip()
        else:
            name = None
    return options


def test_help_shows_the_values_that_will_be_used_once_each():
    sized = "(default: 2e-3; with --max_train_minutes, sized to the budget)"  # an unset option a budget sizes
    for path, expected in (("train", sized), ("train-accelerate", sized)):
        result = hf_charrnn(path, "--help", env={"COLUMNS": "400"})
        assert result.returncode == 0
        options = option_help(result.stdout)
        assert expected in options["--learning_rate"]
        assert all(line.count("(default") <= 1 for line in options.values())
        assert "(default: None)" not in result.stdout
    train_help = hf_charrnn("train", "--help", env={"COLUMNS": "400"}).stdout
    assert "(default: outputs/charrnn)" in train_help and "(default: 64)" in train_help


# ----------------------------------------------------------------------------------------------------------------------
# generate and evaluate
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    tokenizer = build_char_tokenizer([verse(0, 50)])
    model = tiny_model(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("model") / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_generate_without_a_prompt_starts_where_a_document_starts(model_folder):
    result = hf_charrnn_in_process("generate", model_folder, "--greedy", "--max_new_tokens", "30")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning" not in result.stderr and "<" not in result.stdout
    model, tokenizer = AutoModelForCausalLM.from_pretrained(model_folder), AutoTokenizer.from_pretrained(model_folder)
    start = torch.tensor([[tokenizer.eos_token_id]])  # documents follow <eos> in the training stream
    expected = model.generate(start, attention_mask=torch.ones_like(start), do_sample=False, max_new_tokens=30)
    assert result.stdout.rstrip("\n") == tokenizer.decode(expected[0], skip_special_tokens=True).rstrip("\n")


def test_a_missing_folder_and_an_unreachable_hub_are_named(tmp_path):
    (tmp_path / "outputs").mkdir()
    missing = hf_charrnn("generate", "outputs/does-not-exist", "--prompt", "x", cwd=tmp_path)
    assert_user_error(missing, "No such folder: 'outputs/does-not-exist'")
    closed = free_port()  # a port on this machine where nothing listens
    offline = hf_charrnn("generate", "someone/some-model", "--prompt", "x", cwd=tmp_path,
                         env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{closed}",
                              "HF_HOME": str(tmp_path / "hf_home")}, process=True)  # read at import
    assert_user_error(offline, "cannot be reached", "HF_HUB_OFFLINE=1")


def test_an_unreachable_hub_is_probed_once_then_only_the_cache_is_read(monkeypatch):
    """Why the answer comes in seconds: one short connection attempt, then no online `from_pretrained` (whose
    retries take about a minute)."""
    from hf_charrnn import model_loading

    probes, loads = [], []

    def refuse(address, timeout=None):
        probes.append(timeout)
        raise ConnectionRefusedError

    def from_cache_only(name, **options):
        loads.append(options)
        raise OSError("not in the cache")

    monkeypatch.setattr(model_loading.socket, "create_connection", refuse)
    monkeypatch.setattr(model_loading, "_load", from_cache_only)
    monkeypatch.setattr(model_loading.hub_constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(model_loading.ModelNotFoundError, match="cannot be reached.*HF_HUB_OFFLINE=1"):
        model_loading.load_from_hub("someone/some-model")
    assert probes == [model_loading.HUB_PROBE_TIMEOUT_S]
    assert loads == [{"local_files_only": True}]


def test_broken_model_folders_name_the_file(model_folder, tmp_path):
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        (no_tokenizer / name).write_bytes((model_folder / name).read_bytes())
    assert_user_error(hf_charrnn_in_process("generate", no_tokenizer, "--prompt", "x"),
                      "has no tokenizer: tokenizer.json and tokenizer_config.json are missing")
    edited = tmp_path / "edited"
    edited.mkdir()
    for source in model_folder.iterdir():
        (edited / source.name).write_bytes(source.read_bytes())
    config = json.loads((edited / "config.json").read_text())
    (edited / "config.json").write_text(json.dumps({**config, "cell_type": "transformer"}))
    result = hf_charrnn("generate", edited, "--prompt", "x", process=True)  # all of its stderr, loggers' too
    assert_user_error(result, "config.json is invalid: cell_type='transformer' is not supported")
    assert result.stderr.startswith("error: ") and "[transformers]" not in result.stderr


def test_evaluate_refuses_empty_text_warns_on_unknown_characters_and_names_its_data(model_folder, texts, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert_user_error(hf_charrnn_in_process("evaluate", model_folder, "--text_file", empty), "is empty")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("déjà\n".encode("latin-1"))
    assert_user_error(hf_charrnn_in_process("evaluate", model_folder, "--text_file", latin1), "byte 1 (0xe9", "iconv")
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("ЖЖЖЖ ЖЖЖЖ ЖЖЖЖ the\n", encoding="utf-8")
    warned = hf_charrnn_in_process("evaluate", model_folder, "--text_file", foreign)
    assert warned.returncode == 0 and "12 characters" in warned.stderr and "63.2% of the text" in warned.stderr
    assert_user_error(hf_charrnn_in_process("evaluate", model_folder),
                      "Say what to score: --text_file FILE, or --dataset")

    trained = tmp_path / "trained"
    done = hf_charrnn(*train_args("train", texts["first"], trained, "--max_steps", "2"))
    assert done.returncode == 0, done.stderr[-3000:]
    recorded = hf_charrnn("evaluate", trained)
    assert recorded.returncode == 0, recorded.stderr[-3000:]
    report = json.loads(recorded.stdout)
    assert report["recorded_data"].endswith("first.txt") and report["split"] == "validation"
    assert_user_error(hf_charrnn_in_process("evaluate", trained, "--split", "test"), "has no 'test' split")
