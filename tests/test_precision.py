"""bf16 autocast or fp32, chosen per run (hf_charrnn.precision): the rule, the real measurement, and both training
paths actually training in what they report."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch

from hf_charrnn import CharRNNConfig, CharRNNForCausalLM
from hf_charrnn.cli.train import main as train_main
from hf_charrnn.precision import (
    BF16_MIN_SPEEDUP,
    bf16_kernels_work,
    choose_precision,
    cpu_has_bf16_instructions,
    decide_from_timings,
    measured_choice,
    precisions_to_time,
    resumed_precision,
)
from hf_charrnn.trainer import train
from hf_charrnn.trainer_utils import TrainingSetupError
from hf_charrnn.training_accelerate import train_bptt
from hf_charrnn.training_args import CharRNNTrainingArguments, CorpusArguments, DataArguments, ModelArguments

PLAY = "shakespeare:the-comedy-of-errors"


def tiny(cell_type: str = "gru") -> CharRNNForCausalLM:
    torch.manual_seed(0)
    return CharRNNForCausalLM(CharRNNConfig(vocab_size=40, cell_type=cell_type, hidden_size=16, embedding_dim=8))


@pytest.mark.parametrize("fp32_ms, bf16_ms, chosen", [(100, 50, "bf16"), (100, 100 / BF16_MIN_SPEEDUP, "bf16"),
                                                      (100, 99, "no"), (100, 400, "no")])
def test_bf16_is_taken_only_when_clearly_faster(fp32_ms, bf16_ms, chosen):
    choice = decide_from_timings(fp32_ms / 1e3, bf16_ms / 1e3)
    assert choice.mixed_precision == chosen
    assert f"{fp32_ms / bf16_ms:.2f}x" in choice.reason
    assert choice.fp32_ms_per_step == pytest.approx(fp32_ms, abs=0.01)
    assert choice.bf16_ms_per_step == pytest.approx(bf16_ms, abs=0.01)


def test_asked_for_precisions_are_taken_or_refused_without_measuring():
    assert choose_precision(tiny(), False, 8, 16, "cpu").as_dict() == {
        "mixed_precision": "no", "reason": "fp32: asked for (--no_bf16)", "fp32_ms_per_step": None,
        "bf16_ms_per_step": None}
    for cell_type in ("lstm", "gru"):
        if bf16_kernels_work("cpu", cell_type):
            assert choose_precision(tiny(cell_type), True, 8, 16, "cpu").mixed_precision == "bf16"
        else:
            with pytest.raises(ValueError, match=f"bf16 does not work for {cell_type} layers.*--no_bf16"):
                choose_precision(tiny(cell_type), True, 8, 16, "cpu")


def test_a_resumed_run_keeps_its_checkpoints_precision_where_it_can_run():
    assert resumed_precision("no", "checkpoint-8", "lstm", "cpu").as_dict() == {
        "mixed_precision": "no", "reason": "fp32: the precision checkpoint-8 was trained in (a resumed run keeps it)",
        "fp32_ms_per_step": None, "bf16_ms_per_step": None}
    assert resumed_precision(None, "checkpoint-8", "lstm", "cpu") is None  # not recorded: choose afresh
    kept = resumed_precision("bf16", "checkpoint-8", "gru", "cpu")
    assert (kept is not None) == bf16_kernels_work("cpu", "gru")
    if not torch.cuda.is_available():  # a GPU checkpoint resumed on this CPU machine: no CUDA kernels, choose afresh
        assert resumed_precision("bf16", "checkpoint-8", "lstm", "cuda") is None


def test_measuring_the_precision_leaves_the_model_and_the_random_state_alone():
    model = tiny("gru")
    before = [p.detach().clone() for p in model.parameters()]
    random_state = torch.random.get_rng_state()
    if not bf16_kernels_work("cpu", "gru"):
        pytest.skip("this CPU has no bf16 GRU kernels to time")
    choice = measured_choice(model, 16, 32, "cpu")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "the measurement trained the model"
    assert torch.equal(torch.random.get_rng_state(), random_state), "the measurement moved the random state"
    assert choice.fp32_ms_per_step > 0 and choice.bf16_ms_per_step > 0
    assert choose_precision(model, None, 64, 128, "cpu", single_process=False).mixed_precision == "no"  # no GPU


@pytest.mark.parametrize("times, expected", [
    ([0.12, 0.06, 0.10, 0.05], ("bf16", 100.0, 50.0)),  # the best of two alternating turns each: 2x
    ([0.10, 0.096, 0.10, 0.098], ("no", 100.0, 96.0)),  # 1.04x: under BF16_MIN_SPEEDUP
    ([0.10, 0.40], ("no", 100.0, 400.0)),  # bf16 over 1.5x slower: no second round
])
def test_the_measured_choice_takes_the_best_of_alternating_turns(monkeypatch, times, expected):
    timed = []

    def scripted(model, rows, length, *, bf16, steps, device):
        timed.append(bf16)
        return times[len(timed) - 1]

    monkeypatch.setattr("hf_charrnn.precision.training_step_seconds", scripted)
    choice = measured_choice(tiny("gru"), 16, 32, "cpu")
    assert timed == [False, True] * (len(times) // 2)
    assert (choice.mixed_precision, choice.fp32_ms_per_step, choice.bf16_ms_per_step) == expected
    assert BF16_MIN_SPEEDUP > 1.04  # (the second case's premise)


def cpuinfo_flags() -> set[str] | None:
    try:
        line = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return None
    return set(line.split(":", 1)[1].split())


@pytest.mark.skipif(platform.machine() != "x86_64" or cpuinfo_flags() is None, reason="reads x86 Linux CPU flags")
def test_a_cpu_without_bf16_instructions_is_not_measured():
    """The screen agrees with the kernel's CPU flags, and a CPU without them gets fp32 without timing anything."""
    native = bool({"avx512_bf16", "amx_bf16"} & cpuinfo_flags())
    assert cpu_has_bf16_instructions() == native
    choice = choose_precision(tiny("gru"), None, 64, 128, "cpu")
    if not native:
        assert choice.mixed_precision == "no" and choice.fp32_ms_per_step is None, choice
        assert "no bf16 instructions" in choice.reason or "no bf16 kernels" in choice.reason
    else:
        assert choice.fp32_ms_per_step is not None or "no bf16 kernels" in choice.reason, choice


def autocast_seen(model) -> list[bool]:
    """Records, for every forward of `model.model.rnn`, whether CPU autocast to bf16 was on."""
    seen: list[bool] = []
    model.model.rnn.register_forward_pre_hook(
        lambda module, inputs: seen.append(torch.is_autocast_enabled("cpu")
                                           and torch.get_autocast_dtype("cpu") == torch.bfloat16))
    return seen


@pytest.mark.skipif(not bf16_kernels_work("cpu", "gru"), reason="this CPU has no bf16 GRU kernels")
@pytest.mark.parametrize("flag", ["bf16", "no_bf16"])
def test_the_trainer_path_trains_in_the_precision_it_reports(tmp_path, monkeypatch, flag):
    import hf_charrnn.trainer as trainer_module

    seen = []
    real_build = trainer_module.build_model

    def build_and_watch(*args, **kwargs):
        model = real_build(*args, **kwargs)
        seen.append(autocast_seen(model))
        return model

    monkeypatch.setattr(trainer_module, "build_model", build_and_watch)
    summary = train(ModelArguments(cell_type="gru", hidden_size=16, embedding_dim=8),
                    DataArguments(dataset=PLAY, block_size=32, sample_every_steps=0, sample_length=4,
                                  max_eval_samples=4),
                    CharRNNTrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4,
                                             report_to="none", eval_strategy="no", save_strategy="no",
                                             **{flag: True}))
    bf16 = flag == "bf16"
    assert summary["precision"]["mixed_precision"] == ("bf16" if bf16 else "no")
    assert summary["hyperparameters"]["mixed_precision"] == summary["precision"]["mixed_precision"]
    training_forwards = seen[0][:2]
    assert training_forwards == [bf16, bf16]


@pytest.mark.skipif(not bf16_kernels_work("cpu", "gru"), reason="this CPU has no bf16 GRU kernels")
def test_the_bptt_path_takes_the_same_flags(tmp_path):
    model = CharRNNForCausalLM(CharRNNConfig(vocab_size=80, cell_type="gru", hidden_size=16, embedding_dim=8))
    seen = autocast_seen(model)
    summary = train_bptt(output_dir=str(tmp_path), model=model, max_steps=2, batch_size=4, block_size=16,
                         bf16=True, save_steps=0, eval_steps=0, max_eval_tokens=64, report_to="none",
                         sample_every_steps=0, evaluate_test_split=False, disable_tqdm=True,
                         data_args=CorpusArguments(dataset=PLAY))
    assert summary["precision"]["mixed_precision"] == "bf16" and seen[:2] == [True, True]


def test_contradicting_flags_are_a_usage_error(tmp_path, capsys):
    assert train_main(["--bf16", "--no_bf16", "--output_dir", str(tmp_path)]) == 2
    assert "--bf16 and --no_bf16 contradict each other" in capsys.readouterr().err


def test_an_explicit_bf16_that_cannot_run_is_a_setup_error(tmp_path):
    if bf16_kernels_work("cpu", "lstm"):
        pytest.skip("this CPU has bf16 LSTM kernels")
    with pytest.raises(TrainingSetupError, match="bf16 does not work for lstm"):
        train(ModelArguments(hidden_size=16, embedding_dim=8), DataArguments(dataset=PLAY),
              CharRNNTrainingArguments(output_dir=str(tmp_path), max_steps=1, bf16=True, report_to="none"))


@pytest.mark.parametrize("kernels, instructions, left_to_choose, asked_for_bf16", [
    (False, True, (False,), (False,)),  # no bf16 kernels: fp32 only (an explicit --bf16 is refused when choosing)
    (True, False, (False,), (True,)),  # bf16 would be emulated: not measured, fp32
    (True, True, (False, True), (True,)),  # either may win: both timed, as the run measures both
    (True, None, (False, True), (True,)),  # torch cannot tell (not x86): measured
])
def test_sizing_times_the_precisions_the_run_may_take(monkeypatch, kernels, instructions, left_to_choose,
                                                      asked_for_bf16):
    """A budget sizes the model from its step time before the run's precision is chosen: in the precision asked for,
    or in both where the run will measure them and take the faster (a bf16 machine then sizes for its bf16 speed)."""
    monkeypatch.setattr("hf_charrnn.precision.bf16_kernels_work", lambda *args, **kwargs: kernels)
    monkeypatch.setattr("hf_charrnn.precision.cpu_has_bf16_instructions", lambda: instructions)
    for cell_type in ("lstm", "gru"):
        assert precisions_to_time(None, cell_type, "cpu") == left_to_choose
        assert precisions_to_time(True, cell_type, "cpu") == asked_for_bf16
        assert precisions_to_time(False, cell_type, "cpu") == (False,)
        assert precisions_to_time(None, cell_type, "cpu", single_process=False) == (False,)  # several: fp32 on CPU
