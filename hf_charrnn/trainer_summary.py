"""What a finished Trainer run leaves behind: the saved model, its final scores, the loss curve and the summary.

`save_and_summarize` is the last step of `hf_charrnn.trainer.train`; the summary's layout is `hf_charrnn.reporting`'s,
shared with the stateful-BPTT path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .configuration_charrnn import REGULARIZATION_FIELDS
from .memorisation import training_run_report
from .records import predicted_tokens
from .reporting import generate_samples, kept_weights_note, training_summary, write_run_report
from .shifted_blocks import ShiftedBlocks
from .trainer_utils import dataset_label, is_char_tokenizer, validation_note
from .training_args import DataArguments

if TYPE_CHECKING:  # only for the annotations: trainer.py imports this module
    from .trainer import TrainerRun


def metrics_block(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {
        "loss": metrics.get(f"{prefix}_loss"),
        "bpc": metrics.get(f"{prefix}_bpc"),
        "perplexity": metrics.get(f"{prefix}_perplexity"),
    }


def _final_scores(run: TrainerRun, data_args: DataArguments, training_args) -> tuple[dict, dict | None]:
    """Validation (the last evaluation when it ran at the last step on these weights) and test figures."""
    trainer = run.trainer
    last_eval = next((entry for entry in reversed(trainer.state.log_history) if "eval_loss" in entry), None)
    reuse = (
        last_eval is not None
        and last_eval.get("step") == trainer.state.global_step
        and not training_args.load_best_model_at_end
        and "eval_bpc" in last_eval
    )
    validation = metrics_block(last_eval if reuse else trainer.evaluate(), "eval")
    test = None
    if data_args.evaluate_test_split and run.test_dataset is not None:
        test = metrics_block(trainer.evaluate(run.test_dataset, metric_key_prefix="test"), "test")
    return validation, test


def save_and_summarize(run: TrainerRun, runtime: float, model_args, data_args, training_args) -> dict[str, Any]:
    """Save the model, tokenizer and state, score it, plot the losses, write and return the summary."""
    trainer, output_dir = run.trainer, training_args.output_dir
    trainer.save_model(output_dir)  # the model, tokenizer (processing_class) and generation config
    trainer.save_state()
    validation, test = _final_scores(run, data_args, training_args)
    samples = generate_samples(trainer.model, run.tokenizer, [run.sample_prompt], seed=training_args.seed,
                               max_new_tokens=data_args.sample_length)
    validation_blocks = run.validation_blocks
    if validation_blocks is None:  # a streaming split: count its blocks (validation sets are small)
        validation_blocks = sum(1 for _ in trainer.eval_dataset)
    history = trainer.state.log_history
    summary = training_summary(
        dataset=dataset_label(data_args), tokenizer_kind="char" if is_char_tokenizer(run.tokenizer) else "word",
        training_path="trainer", train_tokens=_train_tokens(run, data_args, training_args),
        validation_tokens=(predicted_tokens(trainer.eval_dataset) if data_args.records != "none" else
                           validation_blocks * data_args.block_size), steps=trainer.state.global_step,
        epochs=float(trainer.state.epoch or 0.0), runtime_s=runtime,
        hyperparameters=_hyperparameters(run, model_args, data_args, training_args), log_history=history,
        resumed_from=run.checkpoint, validation=validation, test=test, samples=samples,
    )
    summary["precision"] = run.precision.as_dict()
    summary["validation_note"] = validation_note(data_args)
    summary.update(_kept_weights(trainer, training_args))
    summary["memorisation"] = training_run_report(trainer.model, run.tokenizer, run.train_texts, training_args.seed)
    if run.budget is not None:
        summary["time_budget"] = run.budget.summary()
    if run.sampler.history:
        summary["samples_during_training"] = run.sampler.history
    write_run_report(output_dir, summary, history, title=f"CharRNN on {dataset_label(data_args)}")
    return summary


def _kept_weights(trainer, training_args) -> dict[str, Any]:
    """The step whose weights the run saved: the best evaluation's, which Trainer loaded at the end
    (load_best_model_at_end), or the last step's."""
    state, last = trainer.state, trainer.state.global_step
    kept = state.best_global_step if training_args.load_best_model_at_end and state.best_model_checkpoint else last
    last_eval = next((entry for entry in state.log_history  # the first: the final scoring logs at that step again
                      if "eval_loss" in entry and entry.get("step") == last), None)
    return kept_weights_note(kept or last, last, last_eval and metrics_block(last_eval, "eval"))


def _effective_batch_size(training_args) -> int:
    world = max(training_args.world_size, 1)
    return training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * world


def _train_tokens(run: TrainerRun, data_args: DataArguments, training_args) -> int:
    """Tokens in the training set; for a streaming set, the tokens the steps read."""
    if data_args.records != "none":
        return predicted_tokens(run.trainer.train_dataset)
    if run.train_blocks is not None:
        return int(run.train_blocks * data_args.block_size)
    return int(run.trainer.state.global_step * _effective_batch_size(training_args) * data_args.block_size)


def _hyperparameters(run: TrainerRun, model_args, data_args, training_args) -> dict[str, Any]:
    config, model = run.trainer.model.config, run.trainer.model
    return {
        **{name: getattr(config, name) for name in (
            "vocab_size", "cell_type", "hidden_size", "num_layers", "embedding_dim", "input_encoding",
            "tie_word_embeddings", *REGULARIZATION_FIELDS,
        )},
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "block_size": data_args.block_size,
        "effective_batch_size": _effective_batch_size(training_args),
        **{name: getattr(training_args, name) for name in (
            "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type",
            "warmup_steps",
        )},
        "optimizer": training_args.optim,
        "mixed_precision": run.precision.mixed_precision,
        **{name: getattr(training_args, name) for name in (
            "weight_decay", "adam_beta1", "adam_beta2", "max_grad_norm", "num_train_epochs", "max_steps", "seed",
        )},
        "fine_tuned_from": model_args.model_name_or_path,
        "resumed_from": run.checkpoint,
        "state_between_blocks": "reset (each block starts from a zero state)",
        "block_offsets": "shifted each epoch" if isinstance(run.trainer.train_dataset, ShiftedBlocks) else "fixed",
    }
