"""Record mode (`--records line|row`, the Trainer path): one example per record, each started after <eos> and ended
with <eos>; a padded batch's loss is exactly that of its records one by one."""

import json
import random

import pytest
import torch
from datasets import Dataset
from torch.nn import functional as F

from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

from testing_utils import assert_same_run, copy_as_running, hf_charrnn_in_process, launch_two_processes, tiny_model
from hf_charrnn.cli.train import main as train_command
from hf_charrnn.cli.train_accelerate import main as train_accelerate_command
from hf_charrnn.generate import primed_state, sample_records
from hf_charrnn.records import RecordCollator, predicted_tokens, split_records, tokenize_records
from hf_charrnn.scoring import score_texts
from hf_charrnn.tokenization_charrnn import build_char_tokenizer

NAMES = ["Anna", "Bob", "Constantine", "Di", "Eve", "Fitzgerald", "Gus", "Hannah", "Ida", "Jo"]
TOKENIZER = build_char_tokenizer(["\n".join(NAMES)])


def test_lines_become_records_wrapped_in_eos_and_long_ones_are_cut(caplog):
    assert split_records(["Anna\nBob\n\nCy", "Di\n"], "line") == ["Anna", "Bob", "Cy", "Di"]
    assert split_records(["Anna\nBob", "", "Di"], "row") == ["Anna\nBob", "Di"]
    rows = Dataset.from_dict({"text": ["\n".join(NAMES[:5]) + "\n", "\n".join(NAMES[5:])]})
    with caplog.at_level("WARNING", logger="hf_charrnn.records"):
        records = tokenize_records(rows, TOKENIZER, "line", max_length=8)
    assert "2 of 10 records are longer than --block_size 8 tokens" in caplog.text  # the warning that counts them
    eos = TOKENIZER.eos_token_id
    expected = [[eos, *TOKENIZER(name, add_special_tokens=False)["input_ids"], eos][:8] for name in NAMES]
    assert [list(map(int, ids)) for ids in records["input_ids"]] == expected  # "Constantine", "Fitzgerald": cut
    assert predicted_tokens(records) == sum(len(ids) - 1 for ids in expected)
    with pytest.raises(ValueError, match="no record"):
        tokenize_records(Dataset.from_dict({"text": ["\n\n"]}), TOKENIZER, "line", max_length=8)
    pieces = Dataset.from_dict({"text": ["Anna\nBo", "b\n"], "document_end": [False, True]})  # a file's pieces
    with pytest.raises(ValueError, match="use --records line"):
        tokenize_records(pieces, TOKENIZER, "row", max_length=8)


def test_a_padded_batch_has_exactly_the_loss_of_its_records_one_by_one():
    model = tiny_model(vocab_size=len(TOKENIZER))
    eos = TOKENIZER.eos_token_id
    examples = [{"input_ids": [eos, *TOKENIZER(name, add_special_tokens=False)["input_ids"], eos]} for name in NAMES]
    batch = RecordCollator(TOKENIZER.pad_token_id)(examples)
    assert batch["input_ids"].shape == (len(NAMES), max(len(e["input_ids"]) for e in examples))
    with torch.no_grad():
        batched = model(**batch).loss
        nats, tokens = 0.0, 0
        for example in examples:  # each record alone, from a fresh state
            ids = torch.tensor([example["input_ids"]])
            logits = model(ids).logits[0, :-1]
            nats += F.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
            tokens += ids.shape[1] - 1
    assert batched.item() == pytest.approx(nats / tokens, rel=1e-5)


def write_names(path, count, seed):
    rng = random.Random(seed)
    path.write_text("\n".join(rng.choice(NAMES) for _ in range(count)) + "\n", encoding="utf-8")
    return path


def test_training_on_records_learns_names_and_samples_end_with_them(tmp_path):
    train, validation = write_names(tmp_path / "names.txt", 400, 0), write_names(tmp_path / "val.txt", 40, 1)
    output = tmp_path / "names-model"
    code = train_command([
        "--train_file", str(train), "--validation_file", str(validation), "--records", "line",
        "--output_dir", str(output), "--hidden_size", "32", "--embedding_dim", "16", "--num_layers", "1",
        "--block_size", "16", "--per_device_train_batch_size", "16", "--learning_rate", "0.02", "--max_steps", "400",
        "--eval_steps", "400", "--save_steps", "400", "--logging_steps", "50", "--sample_every_steps", "0",
        "--report_to", "none", "--disable_tqdm", "true", "--no_bf16"])  # fp32, as the records are scored below
    assert code == 0
    summary = json.loads((output / "training_summary.json").read_text())
    names_in_train = train.read_text().split()
    assert summary["train_tokens"] == sum(len(name) + 1 for name in names_in_train)  # each name and its end
    assert summary["validation"]["bpc"] < 1.2  # ten names: a record model learns them quickly

    model, tokenizer = AutoModelForCausalLM.from_pretrained(output), AutoTokenizer.from_pretrained(output)
    # The validation loss is per token over all records (not the Trainer's mean of batch means): by hand, one by one.
    scored = score_texts(model, tokenizer, validation.read_text().split(), with_end=True)
    nats = -sum(result["log_probability"] for result in scored)
    assert summary["validation"]["loss"] == pytest.approx(nats / sum(result["tokens"] for result in scored), rel=1e-4)

    set_seed(0)
    sampled = sample_records(model, tokenizer, primed_state(model, tokenizer, ""), 20, max_new_tokens=30,
                             temperature=0.5)
    assert sum(name in NAMES for name in sampled) >= 15, sampled  # whole names, each ended by the model
    command = hf_charrnn_in_process("generate", output, "--num_records", "20", "--temperature", "0.5", "--seed", "0")
    assert command.returncode == 0, command.stderr  # the README's command: one record a line
    lines = command.stdout.splitlines()
    assert len(lines) == 20 and sum(line in NAMES for line in lines) >= 15, lines


def test_rows_of_a_data_set_train_as_records(tmp_path):
    """`--records row`: each row of the text column one record, line breaks and all (here a jsonl file's rows)."""
    rows = [f"{a}\n{b}" for a, b in zip(NAMES, reversed(NAMES))]  # two names a row: a row is not a line
    train, validation = tmp_path / "pairs.jsonl", tmp_path / "pairs-validation.jsonl"
    train.write_text("".join(json.dumps({"text": row}) + "\n" for row in rows * 3), encoding="utf-8")
    validation.write_text("".join(json.dumps({"text": row}) + "\n" for row in rows[:4]), encoding="utf-8")
    output = tmp_path / "pairs-model"
    assert train_command(["--train_file", str(train), "--validation_file", str(validation), "--records", "row",
                          "--output_dir", str(output), "--hidden_size", "16", "--embedding_dim", "8",
                          "--num_layers", "1", "--block_size", "32", "--per_device_train_batch_size", "8",
                          "--max_steps", "4", "--eval_steps", "4", "--save_steps", "4", "--sample_every_steps", "0",
                          "--report_to", "none", "--disable_tqdm", "true"]) == 0
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["train_tokens"] == sum(len(row) + 1 for row in rows * 3)  # each row and its end, not each line
    assert summary["validation_tokens"] == sum(len(row) + 1 for row in rows[:4])


def test_record_options_that_cannot_work_are_usage_errors(tmp_path, capsys):
    train = write_names(tmp_path / "names.txt", 50, 0)
    base = ["--train_file", str(train), "--output_dir", str(tmp_path / "o"), "--max_steps", "1"]
    assert train_command([*base, "--records", "row"]) == 2
    assert "use --records line" in capsys.readouterr().err
    assert train_command([*base, "--records", "line", "--streaming"]) == 2
    assert "--records" in capsys.readouterr().err
    assert train_accelerate_command([*base, "--records", "row"]) == 2  # text files are read in pieces, not rows
    assert "use --records line" in capsys.readouterr().err


def bptt_arguments(train, validation, output, *extra):
    """train-accelerate on records, in fp32 decided (a measured choice could be bf16, whose evaluation differs from
    the fp32 scoring the tests compare it with)."""
    return ["--train_file", str(train), "--validation_file", str(validation), "--records", "line",
            "--mixed_precision", "no", "--output_dir", str(output), "--hidden_size", "32", "--embedding_dim", "16",
            "--num_layers", "1", "--block_size", "16", "--batch_size", "16", "--learning_rate", "0.02", "--sample_every_steps", "0",
            "--report_to", "none", "--disable_tqdm", "--logging_steps", "1", *extra]


def test_train_accelerate_learns_records_and_scores_them_per_token(tmp_path):
    train, validation = write_names(tmp_path / "names.txt", 400, 0), write_names(tmp_path / "val.txt", 40, 1)
    output = tmp_path / "bptt-names"
    assert train_accelerate_command(bptt_arguments(train, validation, output, "--max_steps", "300",
                                                   "--eval_steps", "300", "--save_steps", "300")) == 0
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["train_tokens"] == sum(len(name) + 1 for name in train.read_text().split())
    model, tokenizer = AutoModelForCausalLM.from_pretrained(output), AutoTokenizer.from_pretrained(output)
    scored = score_texts(model, tokenizer, validation.read_text().split(), with_end=True)  # each record alone
    nats, tokens = -sum(r["log_probability"] for r in scored), sum(r["tokens"] for r in scored)
    assert summary["validation"]["loss"] == pytest.approx(nats / tokens, rel=1e-4)
    assert summary["validation"]["bpc"] < 1.2
    set_seed(0)
    sampled = sample_records(model, tokenizer, primed_state(model, tokenizer, ""), 20, max_new_tokens=30,
                             temperature=0.5)
    assert sum(name in NAMES for name in sampled) >= 15, sampled


def test_a_record_run_resumes_exactly(tmp_path):
    train, validation = write_names(tmp_path / "names.txt", 100, 0), write_names(tmp_path / "val.txt", 20, 1)
    options = ("--max_steps", "12", "--eval_steps", "6", "--save_steps", "6", "--batch_size", "8")
    assert train_accelerate_command(bptt_arguments(train, validation, tmp_path / "whole", *options)) == 0
    copy_as_running(tmp_path / "whole", "checkpoint-6", tmp_path / "resumed")  # 12 records an epoch: mid-epoch 1
    assert train_accelerate_command(bptt_arguments(train, validation, tmp_path / "resumed", *options,
                                                   "--resume_from_checkpoint", "latest")) == 0
    assert_same_run(tmp_path / "whole", tmp_path / "resumed", steps_from=7, exact=True)  # README: exactly


@pytest.mark.slow
def test_two_processes_train_records_and_evaluate_every_record_once(tmp_path):
    """`accelerate launch` on 2 CPU processes: each takes its rows of every batch of records, and the validation
    records are shared out and summed, so the reported loss is the saved model's per-token loss over all of them."""

    train, validation = write_names(tmp_path / "names.txt", 200, 0), write_names(tmp_path / "val.txt", 21, 1)
    output = tmp_path / "two"
    launched = launch_two_processes("train_accelerate.py", bptt_arguments(train, validation, output, "--max_steps", "6", "--batch_size", "8",
                                                   "--eval_steps", "3", "--save_steps", "3", "--cpu"))
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert (output / "checkpoint-6" / "random_states_1.pkl").is_file()  # really two processes
    summary = json.loads((output / "training_summary.json").read_text())
    model, tokenizer = AutoModelForCausalLM.from_pretrained(output), AutoTokenizer.from_pretrained(output)
    scored = score_texts(model, tokenizer, validation.read_text().split(), with_end=True)
    nats, tokens = -sum(r["log_probability"] for r in scored), sum(r["tokens"] for r in scored)
    assert summary["validation"]["loss"] == pytest.approx(nats / tokens, rel=1e-4)
