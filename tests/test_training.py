"""The Trainer path (hf_charrnn.trainer): a real Trainer on tiny models and a small generated corpus, through
`train()` / `main()` in this process. Resumed, killed and interrupted runs are in test_training_resume.py."""

import json
import math

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    TrainerCallback,
    default_data_collator,
)

import hf_charrnn  # noqa: F401  (registers the Auto classes)
from hf_charrnn import data
from hf_charrnn.cli.train import main, parse_arguments
from hf_charrnn.reporting import REQUIRED_SUMMARY_KEYS
from hf_charrnn.tokenization_charrnn import build_char_tokenizer
from hf_charrnn.trainer import CharRNNTrainer, train
from hf_charrnn.trainer_utils import TrainingDivergedError, build_model
from hf_charrnn.training_args import CharRNNTrainingArguments, ModelArguments
from testing_utils import hf_charrnn_in_process, make_text, run, tiny_argv

# ----------------------------------------------------------------------------------------------------------------------


def test_train_end_to_end(corpus, tmp_path):
    output_dir = tmp_path / "run"
    summary = run(tiny_argv(corpus, output_dir, "--report_to", "tensorboard", "--sample_every_steps", "20"))

    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) >= 8
    assert losses[-1] < losses[0] - 0.5, losses  # it learns

    for name in ("model.safetensors", "config.json", "tokenizer.json", "generation_config.json",
                 "training_summary.json", "loss_curve.png"):
        assert (output_dir / name).is_file(), name
    assert (output_dir / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(output_dir.glob("runs/*/events.out.tfevents.*")), "no TensorBoard log"

    written = json.loads((output_dir / "training_summary.json").read_text())
    assert set(REQUIRED_SUMMARY_KEYS) <= set(written)
    assert written == json.loads(json.dumps(summary))
    assert written["training_path"] == "trainer" and written["tokenizer"] == "char"
    assert written["validation_note"] is None  # a validation file of its own
    assert written["steps"] == 40 and written["loss_curve"] == "loss_curve.png"
    validation = written["validation"]
    assert validation["bpc"] == pytest.approx(validation["loss"] / math.log(2))  # char tokens: 1 token = 1 char
    assert validation["perplexity"] == pytest.approx(math.exp(validation["loss"]))
    assert validation["loss"] < losses[0] - 0.3
    assert written["hyperparameters"]["hidden_size"] == 32 and written["hyperparameters"]["block_size"] == 32
    memorisation = written["memorisation"]  # 4 seeded samples against the training text
    assert memorisation["samples"] == 4 and 0 <= memorisation["copied_share"] <= 1
    assert memorisation["whole_training_text"] and memorisation["indexed_characters"] > 15_000
    assert written["samples"][0]["text"] and written["samples_during_training"][0]["step"] == 20

    # The evaluations logged during training carry bpc and perplexity too.
    evals = [entry for entry in history if "eval_loss" in entry]
    assert evals and all("eval_bpc" in entry and "eval_perplexity" in entry for entry in evals)

    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    model = AutoModelForCausalLM.from_pretrained(output_dir)
    assert model.generation_config.do_sample is True
    ids = tokenizer("The king", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=20, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert tokenizer.decode(out[0]).startswith("The king")


def test_a_validation_cut_from_the_training_file_is_said_to_continue_it(corpus, tmp_path):
    argv = tiny_argv(corpus, tmp_path / "run", "--max_steps", "4", "--eval_steps", "4", "--save_steps", "4")
    del argv[2:4]  # --validation_file FILE: validation is then the training file's last 5 %
    summary = run(argv)
    assert summary["validation_note"].startswith("validation is the last 5% of the training text, which continues")


def test_gradient_accumulation_matches_one_large_batch(tmp_path):
    """2 micro-batches of 2 with accumulation give the weights of one batch of 4 (num_items_in_batch honoured)."""
    tokenizer = build_char_tokenizer([make_text(0, 50)])
    ids = tokenizer(make_text(0, 50))["input_ids"]
    blocks = [ids[i * 24 : (i + 1) * 24] for i in range(4)]
    dataset = Dataset.from_dict({"input_ids": blocks, "labels": blocks})

    def one_step(batch_size: int, accumulation: int):
        torch.manual_seed(0)
        model = hf_charrnn.CharRNNForCausalLM(
            hf_charrnn.CharRNNConfig(vocab_size=len(tokenizer), hidden_size=16, embedding_dim=8, num_layers=2)
        )
        initial = {name: p.detach().clone() for name, p in model.named_parameters()}
        args = CharRNNTrainingArguments(
            output_dir=str(tmp_path / f"ga{accumulation}"), per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation, max_steps=1, optim="sgd", learning_rate=1.0,
            lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=0.0, eval_strategy="no",
            save_strategy="no", report_to="none", disable_tqdm=True,
        )
        trainer = CharRNNTrainer(model=model, args=args, train_dataset=dataset, data_collator=default_data_collator)
        trainer.train()
        return initial, {name: p.detach().clone() for name, p in model.named_parameters()}

    initial, large = one_step(4, 1)
    _, accumulated = one_step(2, 2)
    assert any(not torch.allclose(initial[name], large[name]) for name in large)  # the step did something
    for name in large:
        torch.testing.assert_close(accumulated[name], large[name], rtol=1e-4, atol=1e-6, msg=name)


class PoisonWeights(TrainerCallback):
    """Set the output layer to NaN just before step `step` runs."""

    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.step:
            with torch.no_grad():
                model.lm_head.weight.fill_(float("nan"))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(corpus, tmp_path):
    output_dir = tmp_path / "nan"
    model_args, data_args, training_args = parse_arguments(
        tiny_argv(corpus, output_dir, "--save_steps", "3", "--eval_steps", "3", "--save_total_limit", "10")
    )
    with pytest.raises(TrainingDivergedError) as caught:
        train(model_args, data_args, training_args, callbacks=[PoisonWeights(step=7)])
    message = str(caught.value)
    assert "at step 7" in message and "nan" in message.lower()
    assert caught.value.step == 7
    assert caught.value.last_checkpoint == str(output_dir / "checkpoint-6")
    assert str(output_dir / "checkpoint-6") in message

    checkpoints = sorted(p.name for p in output_dir.glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-3", "checkpoint-6"]  # nothing saved at or after the bad step
    assert not (output_dir / "model.safetensors").exists()  # no final model either
    weights = load_file(output_dir / "checkpoint-6" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_regularizer_flags_reach_the_saved_config_and_the_summary(corpus, tmp_path):
    argv = tiny_argv(corpus, tmp_path / "run", "--max_steps", "4", "--eval_steps", "4", "--save_steps", "4",
                     "--num_layers", "2", "--dropout", "0.2", "--embedding_dropout", "0.1", "--weight_dropout", "0.3",
                     "--variational_dropout")
    summary = run(argv)
    expected = dict(dropout=0.2, embedding_dropout=0.1, weight_dropout=0.3, variational_dropout=True)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert {name: config[name] for name in expected} == expected
    assert {name: summary["hyperparameters"][name] for name in expected} == expected


def test_fine_tuning_sets_the_regularizers_given_zero_included(tmp_path):
    """A loaded model takes the rates the command line gives, 0 as well (0.0 is a value, not "not given")."""
    tokenizer = build_char_tokenizer([make_text(0, 20)])
    hf_charrnn.CharRNNForCausalLM(hf_charrnn.CharRNNConfig(
        vocab_size=len(tokenizer), hidden_size=16, embedding_dim=8, num_layers=2, dropout=0.3,
        weight_dropout=0.2)).save_pretrained(tmp_path / "base")
    model = build_model(ModelArguments(model_name_or_path=str(tmp_path / "base"), dropout=0.0, weight_dropout=0.0,
                                       embedding_dropout=0.1), tokenizer)
    assert (model.config.dropout, model.config.weight_dropout, model.config.embedding_dropout) == (0.0, 0.0, 0.1)
    assert model.model.rnn.dropout == 0.0 and model.model.dropout.p == 0.0


class SpoilWeights(TrainerCallback):
    """Adds large noise to every weight at the end of `step`: later evaluations get worse."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.add_(torch.randn_like(parameter) * 3)


def test_the_best_evaluation_s_weights_are_kept_and_the_last_step_is_evaluated(corpus, tmp_path):
    """Evaluations every 10 steps of 35, weights spoiled at step 25: the run evaluates its last step (35, off the
    grid) too, ends with step 20's weights (scored again exactly as at step 20), and names that step."""
    argv = tiny_argv(corpus, tmp_path / "run", "--max_steps", "35", "--eval_steps", "10", "--save_steps", "10")
    summary = train(*parse_arguments(argv), callbacks=[SpoilWeights(25)])
    history = json.loads((tmp_path / "run" / "trainer_state.json").read_text())["log_history"]
    evaluations = {entry["step"]: entry["eval_bpc"] for entry in history if "eval_bpc" in entry}
    assert sorted(evaluations) == [10, 20, 30, 35]
    assert min(evaluations, key=evaluations.get) == 20
    assert summary["kept_step"] == 20 and summary["validation"]["bpc"] == evaluations[20]
    assert summary["last_step_validation"]["bpc"] == evaluations[35]


def test_a_run_that_does_not_save_where_it_evaluates_keeps_its_last_step(corpus, tmp_path):
    argv = tiny_argv(corpus, tmp_path / "run", "--max_steps", "20", "--eval_steps", "10", "--save_steps", "15")
    summary = train(*parse_arguments(argv), callbacks=[SpoilWeights(15)])
    assert summary["kept_step"] == 20 and "last_step_validation" not in summary


def test_early_stopping_stops_when_validation_stops_improving(corpus, tmp_path):
    # A learning rate of zero: the validation loss never improves, so patience 1 stops after the second evaluation.
    summary = run(tiny_argv(corpus, tmp_path / "early", "--learning_rate", "0", "--eval_steps", "5",
                            "--save_steps", "5", "--early_stopping_patience", "1", "--warmup_steps", "0"))
    assert summary["steps"] == 10


def test_fine_tuning_warns_about_characters_the_tokenizer_lacks(corpus, tmp_path, caplog):
    base = tmp_path / "base"
    tokenizer = build_char_tokenizer([make_text(0, 50).replace("k", "")])  # no "k" ("king", "speak")
    hf_charrnn.CharRNNForCausalLM(
        hf_charrnn.CharRNNConfig(vocab_size=len(tokenizer), hidden_size=16, embedding_dim=8, num_layers=1)
    ).save_pretrained(base)
    tokenizer.save_pretrained(base)

    with caplog.at_level("WARNING", logger="hf_charrnn"):
        summary = run(tiny_argv(corpus, tmp_path / "tuned", "--model_name_or_path", str(base), "--max_steps", "4",
                                "--eval_steps", "4", "--save_steps", "4", "--hidden_size", "64"))
    warning = " ".join(record.getMessage() for record in caplog.records)
    assert "not in the tokenizer's vocabulary" in warning and "'k'" in warning
    assert "ignoring --hidden_size" in warning  # the loaded model keeps its shape
    assert summary["hyperparameters"]["hidden_size"] == 16
    assert summary["hyperparameters"]["fine_tuned_from"] == str(base)


def test_word_tokenizer_reports_bits_per_character(corpus, tmp_path):
    summary = run(tiny_argv(corpus, tmp_path / "word", "--tokenizer", "word", "--max_steps", "4",
                            "--eval_steps", "4", "--save_steps", "4", "--block_size", "8"))
    assert summary["tokenizer"] == "word"
    validation = summary["validation"]
    # A word token covers several characters: fewer bits per character than per token.
    assert validation["bpc"] < validation["loss"] / math.log(2) / 1.5


def test_defaults_fill_only_what_the_user_did_not_pass():
    _, data_args, args = parse_arguments(["--learning_rate", "5e-05", "--eval_steps", "7", "--report_to", "none"])
    assert args.learning_rate == 5e-05  # the user's value, though it is transformers' default
    assert args.eval_steps == 7 and args.save_steps == 7  # checkpoints follow evaluations
    assert args.per_device_train_batch_size == 64 and args.lr_scheduler_type == "cosine"
    assert args.report_to == [] or args.report_to == "none" or args.report_to == ["none"]
    assert data_args.dataset == "shakespeare" and data_args.block_size == 128

    _, _, args = parse_arguments(["--early_stopping_patience", "2"])
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss"
    assert args.report_to == ["tensorboard"]


def test_yes_no_options_work_as_bare_switches_and_still_take_a_value():
    """TrainingArguments' disable_tqdm and our load_best_model_at_end default to None (decided later), which
    HfArgumentParser leaves wanting a value; a bare switch means yes, as it does for a plain bool option."""
    _, _, args = parse_arguments(["--disable_tqdm", "--load_best_model_at_end", "--report_to", "none"])
    assert args.disable_tqdm is True and args.load_best_model_at_end is True
    _, _, args = parse_arguments(["--disable_tqdm", "false", "--load_best_model_at_end", "no", "--report_to", "none"])
    assert args.disable_tqdm is False and args.load_best_model_at_end is False


@pytest.mark.parametrize(
    "case",
    ["missing_train_file", "empty_train_file", "missing_text_column", "empty_validation_split", "text_too_short",
     "training_text_too_short"],
)
def test_bad_input_prints_one_line_error(case, corpus, tmp_path, capsys):
    if case == "missing_train_file":
        argv = ["--train_file", str(tmp_path / "nope.txt")]
        expected = "does not exist"
    elif case == "empty_train_file":
        (tmp_path / "empty.txt").write_text("")
        argv = ["--train_file", str(tmp_path / "empty.txt")]
        expected = "is empty"
    elif case == "missing_text_column":
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "train.csv").write_text("content\nhello there\nmore text\n")
        argv = ["--dataset", str(tmp_path / "data")]
        expected = "has no column 'text'"
    elif case == "empty_validation_split":
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "train.csv").write_text("text\nhello there\nmore text\n")
        (tmp_path / "data" / "validation.csv").write_text('text\n""\n')
        argv = ["--dataset", str(tmp_path / "data")]
        expected = "'validation' split is empty"
    elif case == "training_text_too_short":
        (tmp_path / "short.txt").write_text("Too short.\n")
        argv = ["--train_file", str(tmp_path / "short.txt"), "--validation_file", corpus["validation"]]
        expected = "yields no block of 128 tokens"
    else:
        (tmp_path / "short.txt").write_text("Too short.\n")
        argv = ["--train_file", corpus["train"], "--validation_file", str(tmp_path / "short.txt")]
        expected = "yields no block"
    status = main(argv + ["--output_dir", str(tmp_path / "out"), "--report_to", "none"])
    captured = capsys.readouterr()
    assert status == 2
    assert "error: " in captured.err and expected in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_a_streamed_corpus_trains_and_evaluates_the_same_validation_tokens_as_in_memory(corpus, tmp_path):
    """--streaming reads the files as an IterableDataset (corpora larger than memory) and still trains and evaluates."""
    streamed = run(tiny_argv(corpus, tmp_path / "streamed", "--streaming", "--max_steps", "20"))
    in_memory = run(tiny_argv(corpus, tmp_path / "in_memory", "--max_steps", "20"))
    assert streamed["steps"] == 20 and math.isfinite(streamed["validation"]["bpc"])
    assert streamed["validation_tokens"] == in_memory["validation_tokens"]
    assert streamed["validation"]["loss"] < math.log(streamed["hyperparameters"]["vocab_size"])  # it learned
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "streamed").config.hidden_size == 32


def test_streaming_without_a_validation_file_holds_windows_of_the_stream_out(tmp_path):
    """A stream needs no --validation_file: validation is held out from it (data.hold_out_stream); a stream too short
    for that is a usage error that says what to do."""
    long_file = tmp_path / "long.txt"
    long_file.write_text(make_text(2, 8000), encoding="utf-8")  # about 220 k characters: one held-out window
    assert data.STREAM_HOLD_OUT_EVERY * data.STREAM_WINDOW_CHARACTERS < len(long_file.read_text(encoding="utf-8"))
    corpus = {"train": str(long_file), "validation": None}
    argv = tiny_argv(corpus, tmp_path / "run", "--streaming", "--max_steps", "5")
    at = argv.index("--validation_file")
    summary = run(argv[:at] + argv[at + 2 :])
    assert summary["steps"] == 5 and math.isfinite(summary["validation"]["bpc"])
    window = data.STREAM_WINDOW_CHARACTERS
    assert window - 200 <= summary["validation_tokens"] <= window + 200  # one window (in whole lines), in blocks

    short_file = tmp_path / "short.txt"
    short_file.write_text(make_text(3, 100), encoding="utf-8")
    short = {"train": str(short_file), "validation": None}
    argv = tiny_argv(short, tmp_path / "short_run", "--streaming")
    at = argv.index("--validation_file")
    result = hf_charrnn_in_process("train", *argv[:at], *argv[at + 2 :])
    assert result.returncode == 2 and "too short to hold validation out" in result.stderr
    assert "--validation_file" in result.stderr and "Traceback" not in result.stderr
