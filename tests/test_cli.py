"""The `hf-charrnn` command as a user runs it: real subprocesses, real checkpoints."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from testing_utils import hf_charrnn_in_process, hf_charrnn_process, tiny_model
from hf_charrnn.tokenization_charrnn import build_char_tokenizer

CORPUS = "O Romeo, Romeo! wherefore art thou Romeo?\nDeny thy father and refuse thy name.\n"


def run_generate(*args) -> subprocess.CompletedProcess:
    """`hf-charrnn generate ARGS` through the command's entry point in this process (saves the ~8 s import a
    subprocess pays; the subprocess tests below cover standard input and the exit code of a failing process)."""
    return hf_charrnn_in_process("generate", *args)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    tokenizer = build_char_tokenizer([CORPUS])
    model = tiny_model(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_the_console_script_is_installed_and_lists_its_commands():
    script = Path(sys.executable).parent / "hf-charrnn"
    assert script.exists() or shutil.which("hf-charrnn")
    result = hf_charrnn_process("--help")
    assert result.returncode == 0
    for command in ("demo", "train", "train-accelerate", "generate", "evaluate", "score", "explain", "push", "export",
                    "env"):
        assert f"  {command} " in result.stdout


def test_greedy_generation_prints_what_generate_returns(checkpoint):
    result = run_generate(str(checkpoint), "--prompt", "Romeo", "--greedy", "--max_new_tokens", "30")
    assert result.returncode == 0, result.stderr
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    ids = model.generate(**tokenizer("Romeo", return_tensors="pt"), do_sample=False, max_new_tokens=30)
    assert result.stdout.rstrip("\n") == tokenizer.decode(ids[0], skip_special_tokens=True).rstrip("\n")


def test_seeded_samples_repeat_and_several_samples_are_numbered(checkpoint):
    options = ("generate", str(checkpoint), "--prompt", "thy", "--seed", "5", "--num_samples", "3",
               "--temperature", "1.5", "--max_new_tokens", "40")
    first, second = hf_charrnn_in_process(*options), hf_charrnn_in_process(*options)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert [line for line in first.stdout.splitlines() if line.startswith("--- sample")] == [
        "--- sample 1 ---", "--- sample 2 ---", "--- sample 3 ---"]


def test_prompt_from_standard_input_and_unknown_characters_warn(checkpoint):
    result = hf_charrnn_process("generate", checkpoint, "--prompt", "-", "--greedy", "--max_new_tokens", "5",
                                stdin="Romeo ☃☃ Zed")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Romeo ")
    assert "warning (prompt): 3 characters (2 distinct: '☃', 'Z') are not in the tokenizer's vocabulary" in result.stderr


def test_beam_search_from_the_command_line(checkpoint):
    result = run_generate(str(checkpoint), "--prompt", "Deny", "--num_beams", "3", "--max_new_tokens", "8",
                        "--no_stream")
    assert result.returncode == 0, result.stderr
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    ids = model.generate(**tokenizer("Deny", return_tensors="pt"), do_sample=False, num_beams=3, max_new_tokens=8)
    assert result.stdout.strip() == tokenizer.decode(ids[0], skip_special_tokens=True).strip()


def test_stop_strings_end_the_sample_after_the_text(checkpoint):
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    ids = model.generate(**tokenizer("Romeo", return_tensors="pt"), do_sample=False, max_new_tokens=40)
    continuation = tokenizer.decode(ids[0, 5:], skip_special_tokens=True)
    stop = continuation[6]  # a character the greedy continuation reaches: it must end there, at its first occurrence
    result = run_generate(str(checkpoint), "--prompt", "Romeo", "--greedy", "--max_new_tokens", "40",
                        "--stop", stop, "--stop", "never printed")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n") == ("Romeo" + continuation[: continuation.index(stop) + 1]).rstrip("\n")


def test_records_are_sampled_to_their_end_one_per_line(checkpoint):
    from transformers import set_seed

    result = run_generate(str(checkpoint), "--num_records", "4", "--seed", "3", "--max_new_tokens", "300")
    assert result.returncode == 0, result.stderr
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    set_seed(3)
    start = torch.tensor([[tokenizer.eos_token_id]])
    ids = model.generate(start, attention_mask=torch.ones_like(start), num_return_sequences=4, do_sample=True,
                         max_new_tokens=300)
    ended = [(row[1:] == tokenizer.eos_token_id).any().item() for row in ids]
    records = [text.rstrip("\n") for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    assert result.stdout == "\n".join(records) + "\n"
    assert ("did not end" in result.stderr) == (not all(ended))
    cut = run_generate(str(checkpoint), "--num_records", "3", "--seed", "3", "--max_new_tokens", "1",
                     "--temperature", "0.01")  # the most likely first character is not <eos>: all three are cut
    assert cut.returncode == 0 and "3 of 3 records did not end within 1 new tokens" in cut.stderr
    stopped = run_generate(str(checkpoint), "--num_records", "3", "--seed", "3", "--max_new_tokens", "300",
                         "--stop", max(records, key=len)[1])  # a record ended by a stop text has ended: no warning
    assert stopped.returncode == 0 and "did not end" not in stopped.stderr

    # A prompt is the beginning of every record: read after <eos>, as records are in training.
    prompted = run_generate(str(checkpoint), "--num_records", "2", "--seed", "3", "--max_new_tokens", "300",
                          "--prompt", "Ro")
    set_seed(3)
    start = torch.tensor([[tokenizer.eos_token_id, *tokenizer("Ro", add_special_tokens=False)["input_ids"]]])
    ids = model.generate(start, attention_mask=torch.ones_like(start), num_return_sequences=2, do_sample=True,
                         max_new_tokens=300)
    assert prompted.stdout == "\n".join(t.rstrip("\n") for t in tokenizer.batch_decode(ids, skip_special_tokens=True)) \
        + "\n"


def test_repetition_controls_reach_generate(checkpoint):
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    result = run_generate(str(checkpoint), "--prompt", "thy", "--greedy", "--max_new_tokens", "60",
                        "--no_repeat_ngram_size", "2", "--repetition_penalty", "1.3")
    assert result.returncode == 0, result.stderr
    ids = model.generate(**tokenizer("thy", return_tensors="pt"), do_sample=False, max_new_tokens=60,
                         no_repeat_ngram_size=2, repetition_penalty=1.3)
    assert result.stdout.rstrip("\n") == tokenizer.decode(ids[0], skip_special_tokens=True).rstrip("\n")
    pairs = [tuple(ids[0, i : i + 2].tolist()) for i in range(ids.shape[1] - 1)]
    assert len(pairs) == len(set(pairs))  # no character pair twice


def test_a_saved_state_continues_like_one_long_call_and_another_model_refuses_it(checkpoint, tmp_path):
    state = tmp_path / "romeo.safetensors"
    primed = run_generate(str(checkpoint), "--prompt", "O Romeo, ", "--save_state", str(state),
                        "--max_new_tokens", "0")
    assert primed.returncode == 0 and primed.stdout == "" and "Saved the state after 9 prompt tokens" in primed.stderr
    options = ("--seed", "4", "--temperature", "1.3", "--max_new_tokens", "30", "--num_samples", "2")
    continued = run_generate(str(checkpoint), "--load_state", str(state), "--prompt", "Rom", *options)
    whole = run_generate(str(checkpoint), "--prompt", "O Romeo, Rom", *options)
    assert continued.returncode == 0, continued.stderr
    # The same tokens; only the text added now is shown again, not the saved prompt (it may be a whole act).
    assert "O Romeo, Rom" in whole.stdout and continued.stdout == whole.stdout.replace("O Romeo, Rom", "Rom")

    other = tmp_path / "other"
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    tiny_model(seed=1, vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id).save_pretrained(other)
    tokenizer.save_pretrained(other)
    refused = run_generate(str(other), "--load_state", str(state))
    assert refused.returncode == 2 and "holds the state of another model" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_generation_options_out_of_range_are_one_line_errors(checkpoint):
    unusable = "--device cuda: this torch" if not torch.cuda.is_available() else "not a device torch knows"
    for options, message in ((("--num_records", "0"), "--num_records must be at least 1"),
                             (("--device", "cuda" if not torch.cuda.is_available() else "gpu"), unusable),
                             (("--stop", ""), "--stop needs a non-empty text"),
                             (("--repetition_penalty", "0"), "--repetition_penalty must be above 0"),
                             (("--num_records", "2", "--num_samples", "2"), "not both"),
                             (("--num_records", "2", "--greedy"), "would all be the same record"),
                             (("--num_records", "2", "--num_beams", "2"), "would all be the same record"),
                             (("--save_state", "no/such/folder/s.safetensors"), "its folder does not exist")):
        result = run_generate(checkpoint, *options)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, options


def test_bad_input_is_one_line_not_a_traceback(tmp_path):
    missing = hf_charrnn_in_process("generate", tmp_path / "no-such-model", "--prompt", "x")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr
    unknown = hf_charrnn_in_process("fly")
    assert unknown.returncode == 2 and "unknown command 'fly'" in unknown.stderr


def raised(action) -> BaseException:
    try:
        action()
    except Exception as error:  # noqa: BLE001 - the test wants the real exception with its traceback
        return error
    raise AssertionError("nothing was raised")


def test_only_the_projects_own_checks_and_os_errors_count_as_user_errors(tmp_path):
    from hf_charrnn import CharRNNCausalLMOutput, CharRNNConfig
    from hf_charrnn.cli import is_user_error

    assert is_user_error(raised(lambda: CharRNNConfig(cell_type="transformer")))  # a `raise` in the config's checks
    assert is_user_error(raised(lambda: open(tmp_path / "missing.txt")))  # the operating system's answer
    # What broke every command on transformers 5.24: a TypeError from the dataclass' generated __init__ is a bug.
    assert not is_user_error(raised(lambda: CharRNNCausalLMOutput(state_of_the_art=1)))
    assert not is_user_error(raised(lambda: torch.zeros(2) @ torch.zeros(3)))  # raised inside a library
    assert not is_user_error(raised(lambda: {}["missing"]))


BROKEN_COMMAND = """
import sys
from hf_charrnn import cli
cli.COMMANDS["broken"] = ("broken_command", "a command with a bug")
raise SystemExit(cli.main(sys.argv[1:]))
"""


def test_a_bug_shows_a_short_traceback_says_so_and_asks_for_env(tmp_path):
    (tmp_path / "broken_command.py").write_text("def main(argv):\n    return {'steps': 1}['step']\n")
    environment = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", BROKEN_COMMAND, "broken"], capture_output=True, text=True,
                            timeout=300, env=environment)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "broken_command.py" in result.stderr and "KeyError: 'step'" in result.stderr
    assert "this is a bug in hf_charrnn" in result.stderr and "hf-charrnn env" in result.stderr
    assert result.stderr.count("File ") <= 6  # short: the innermost frames only


def test_env_reports_the_versions_a_bug_report_needs():
    result = hf_charrnn_in_process("env", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["transformers"] == transformers.__version__ and report["torch"] == torch.__version__
    for name in ("python", "tokenizers", "datasets", "accelerate", "evaluate", "huggingface_hub", "hf_charrnn"):
        assert report[name] and report[name] != "not installed", name
    assert report["supported transformers"].startswith(("<", ">="))
    import onnxruntime
    import peft

    assert (report["onnxruntime"], report["peft"]) == (onnxruntime.__version__, peft.__version__)  # the extras
    assert report["device"].split()[0] in ("cpu", "cuda", "mps")
    text = hf_charrnn_in_process("env")
    assert text.returncode == 0 and f"- transformers: {transformers.__version__}" in text.stdout


@pytest.mark.slow
def test_the_demo_trains_saves_and_its_result_loads_and_scores_its_test_plays(tmp_path):
    """The README's main command, shortened to a few steps: full corpus, evaluation, a sample, a saved model; then the
    README's next command, `hf-charrnn evaluate OUTPUT --split test`."""
    output_dir = tmp_path / "demo"
    result = hf_charrnn_in_process("demo", "--max_steps", "4", "--output_dir", output_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bits per character" in result.stdout
    scored = hf_charrnn_in_process("evaluate", output_dir, "--split", "test")
    assert scored.returncode == 0, scored.stderr[-3000:]
    report = json.loads(scored.stdout)
    from hf_charrnn.shakespeare import load_shakespeare

    test_plays = load_shakespeare()["test"]
    assert report["split"] == "test" and report["documents"] == len(test_plays)
    assert report["characters"] == sum(len(text) + 1 for text in test_plays["text"]) and report["bpc"] > 0
    model = AutoModelForCausalLM.from_pretrained(output_dir)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    assert model.config.hidden_size == 256 and len(tokenizer) == model.config.vocab_size
    text = tokenizer.decode(model.generate(**tokenizer("ROMEO:", return_tensors="pt"), max_new_tokens=20)[0])
    assert text.startswith("ROMEO:")
    assert (output_dir / "training_summary.json").exists() and (output_dir / "loss_curve.png").exists()
