"""What both training paths share apart from the training loop: their errors, data and tokenizer, model, checkpoints.

Nothing here imports `Trainer` or the Hub code, so the stateful-BPTT path (`training_accelerate`) uses it without
loading either. The run identity (`data_identity`, `model_identity`) is what `run_folder` compares to decide whether
an output folder holds this run.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
)

from . import data, shakespeare, text_files, text_pieces
from .configuration_charrnn import REGULARIZATION_FIELDS, CharRNNConfig
from .modeling_charrnn import CharRNNForCausalLM
from .run_folder import (
    RUN_FILE,
    read_json_file,
)
from .tokenization_charrnn import (
    build_tokenizer,
    count_unknown_characters,
    extend_char_tokenizer,
    is_char_level,
    unknown_warning,
)
from .training_args import MODEL_DEFAULTS, CorpusArguments, DataArguments, ModelArguments

logger = logging.getLogger(__name__)


class TrainingSetupError(ValueError):
    """An expected problem with the arguments or the data (the CLI prints it as one line and exits with 2)."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; training stopped before saving anything after that step."""

    def __init__(self, message: str, step: int, loss: float | None, last_checkpoint: str | None):
        super().__init__(message)
        self.step, self.loss, self.last_checkpoint = step, loss, last_checkpoint

    @classmethod
    def at(cls, what: str, value: float | None, step: int, last_checkpoint: str | None,
           where: str = "") -> TrainingDivergedError:
        """The error both training paths raise: `what` ("training loss", "gradient norm") became `value` at `step`
        (`where` in the run, if known); the way on names the last good checkpoint."""
        shown = value if value is not None else "non-finite (NaN/inf gradients)"
        way_on = (
            f"The last good checkpoint is {last_checkpoint}; resume from it (--resume_from_checkpoint "
            f"{last_checkpoint}) with a lower --learning_rate or --max_grad_norm."
            if last_checkpoint
            else "No checkpoint was saved before that step; start again with a lower --learning_rate."
        )
        return cls(f"The {what} became {shown} at step {step}{where}; training stopped there and nothing after that "
                   f"step was saved. {way_on}", step, value, last_checkpoint)


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM stopped the run after saving a checkpoint; `exit_code` is 130 (SIGINT) or 143 (SIGTERM)."""

    def __init__(self, message: str, checkpoint: str | None, signal_number: int):
        super().__init__(message)
        self.checkpoint, self.signal_number = checkpoint, signal_number
        self.exit_code = 128 + signal_number

    @classmethod
    def at(cls, signal_number: int, step: int, checkpoint: str | None, saved: bool = True) -> TrainingInterrupted:
        """The error both training paths raise after `signal_number` stopped them at `step`, `saved` in
        `checkpoint` (or not saved at all: save_steps=0)."""
        way_on = (f"checkpoint saved to {checkpoint}. Run the same command again to resume (or pass "
                  f"--resume_from_checkpoint {checkpoint})." if saved else "no checkpoint (save_steps=0).")
        return cls(f"{signal.Signals(signal_number).name}: training stopped at step {step}; {way_on}", checkpoint,
                   signal_number)


def check_training_length(max_steps: int) -> None:
    """`--max_steps 0` means no training at all, which no one asks for on purpose (both training paths)."""
    if max_steps == 0:
        raise TrainingSetupError(
            "--max_steps 0 would train nothing: give a positive --max_steps, or leave it out (-1) to train for "
            "--num_train_epochs."
        )


def dataset_label(data_args: CorpusArguments) -> str:
    """A short description of the data for the summary and the model card."""
    if data_args.train_file:
        return ", ".join(data_args.train_file)
    return data_args.dataset_name or data_args.dataset


def load_corpus(name: str, config_name: str | None = None, **named_options):
    """A corpus by name: 'shakespeare' (the embedded plays, split by play), 'shakespeare:<play-slug>' (one play cut
    90/5/5), or any `datasets` name / local data folder / save_to_disk folder (`named_options` go to
    `data.load_named_dataset`)."""
    if name == "shakespeare":
        return shakespeare.load_shakespeare()
    if name.startswith("shakespeare:"):
        return shakespeare.load_shakespeare_play(name.split(":", 1)[1])
    return data.load_named_dataset(name, config_name, **named_options)


def _is_streaming(data_args: CorpusArguments) -> bool:
    """Only the Trainer path reads data lazily (`DataArguments.streaming`); the BPTT path needs the whole stream."""
    return isinstance(data_args, DataArguments) and data_args.streaming


def load_raw_data(data_args: CorpusArguments, seed: int = 0):
    """The text as a DatasetDict with a "text" column and at least train and validation splits."""
    fraction = data_args.validation_split_fraction
    streaming = _is_streaming(data_args)
    if data_args.validation_file and not data_args.train_file:
        raise ValueError("--validation_file needs --train_file (the training text) as well.")
    if data_args.train_file:
        splits = data.load_text_files(
            data_args.train_file,
            validation_file=data_args.validation_file,
            validation_fraction=None if data_args.validation_file or streaming else fraction,
            seed=seed,
            streaming=streaming,
            sample_by="line" if streaming else "document",
            text_column=data_args.text_column,
        )
    else:
        splits = load_corpus(data_args.dataset_name or data_args.dataset, data_args.dataset_config_name,
                             text_column=data_args.text_column, streaming=streaming,
                             validation_fraction=None if streaming else fraction, seed=seed)
    if "train" not in splits:
        raise ValueError(f"The data has no 'train' split; its splits are {sorted(splits)}.")
    if streaming and "validation" not in splits:  # held out from the stream itself
        splits["train"], splits["validation"] = data.hold_out_stream(splits["train"])
        data.check_stream_validation(splits["validation"])
        logger.info("Validation: 1 window in %d of %d characters of the training stream, up to %d characters "
                    "(--validation_file to give one instead).", data.STREAM_HOLD_OUT_EVERY,
                    data.STREAM_WINDOW_CHARACTERS, data.STREAM_VALIDATION_CHARACTERS)
    if "validation" not in splits:
        raise ValueError(
            f"The data has no 'validation' split (its splits are {sorted(splits)}): give --validation_file, or "
            "turn off --streaming so that --validation_split_fraction can hold part of the training text out."
        )
    return splits


def validation_note(data_args: CorpusArguments) -> str | None:
    """What a run's summary says about its validation figure when validation is the end of the training files
    themselves (`--train_file`, one or a few files, no `--validation_file`): it continues the text the model trained
    on (its names, words and topics), so it reads easier than a user's new text does; None otherwise."""
    if not data_args.train_file or data_args.validation_file or _is_streaming(data_args):
        return None
    files = text_files.resolve_files(data_args.train_file, "train")
    if not text_pieces.holds_out_tails(len(files), data_args.validation_split_fraction):
        return None
    share = f"{data_args.validation_split_fraction:.0%}"
    return (f"validation is the last {share} of the training text, which continues what the model trained on and "
            "may read easier than new text; to score new text: hf-charrnn evaluate --model_name_or_path OUTPUT_DIR "
            "--text_file NEW.txt")


class SplitTexts:
    """The texts of a split, read row by row each time it is iterated (a corpus is never one list in memory),
    stopping after about `max_characters` characters (streaming splits)."""

    def __init__(self, split, max_characters: int | None = None):
        self.split, self.max_characters = split, max_characters

    def __iter__(self):
        total = 0
        for row in self.split:
            yield row["text"]
            total += len(row["text"])
            if self.max_characters is not None and total >= self.max_characters:
                return


def training_texts(split, max_characters: int | None = None) -> SplitTexts:
    """The texts of a split (`SplitTexts`: iterable any number of times, read lazily)."""
    return SplitTexts(split, max_characters)


def sample_prompt_for(requested: str | None, data_label: str, validation_split) -> str:
    """The prompt of the samples both paths generate: the one asked for ('' starts a new document), else "ROMEO:" on
    Shakespeare, else the start of the first line of the validation text."""
    if requested is not None:
        return requested
    if "shakespeare" in data_label:
        return "ROMEO:"
    for text in training_texts(validation_split, max_characters=10_000):
        line = text.strip().split("\n", 1)[0]
        if line:
            return line[:20]
    return ""


def is_char_tokenizer(tokenizer) -> bool:
    """True when the tokenizer cuts text into single characters (hf_charrnn's char tokenizer)."""
    return is_char_level(tokenizer)


def load_or_build_tokenizer(model_args: ModelArguments, train_texts: Iterable[str], checkpoint: str | None = None):
    """Return `(tokenizer, source)`: from the checkpoint being resumed, --tokenizer_name, the model being fine-tuned,
    or built from the training text. Warns (with counts) when a loaded tokenizer meets characters it does not know."""
    source = None
    if checkpoint and (Path(checkpoint) / "tokenizer.json").exists():
        source = checkpoint
    elif model_args.tokenizer_name:
        source = model_args.tokenizer_name
    elif model_args.model_name_or_path:
        source = model_args.model_name_or_path
    if source is None:
        tokenizer = build_tokenizer(
            train_texts, level=model_args.tokenizer, min_frequency=model_args.min_frequency,
            max_vocab=model_args.max_vocab,
        )
        logger.info("Built a %s tokenizer with %d tokens from the training text.", model_args.tokenizer, len(tokenizer))
        if model_args.min_frequency > 1 or model_args.max_vocab:
            message = unknown_warning(count_unknown_characters(tokenizer, train_texts), unit=_unit(tokenizer))
            if message:
                logger.info("Vocabulary limits: %s", message)
        return tokenizer, "built"
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=model_args.trust_remote_code)
    if model_args.extend_vocabulary and source != checkpoint:  # a resumed checkpoint's tokenizer is extended already
        tokenizer, added = extend_char_tokenizer(tokenizer, train_texts)
        if added:
            logger.info("Added %d characters to the vocabulary of %s: %s", len(added), source,
                        ", ".join(repr(character) for character in added[:20]) + (", ..." if len(added) > 20 else ""))
    message = unknown_warning(count_unknown_characters(tokenizer, train_texts), unit=_unit(tokenizer))
    if message:
        logger.warning("The tokenizer from %s does not cover the training text: %s", source, message)
    return tokenizer, source


def _unit(tokenizer) -> str:
    return "characters" if is_char_tokenizer(tokenizer) else "words"


def build_model(model_args: ModelArguments, tokenizer, checkpoint: str | None = None) -> CharRNNForCausalLM:
    """A new CharRNNForCausalLM sized for `tokenizer`, the model to fine-tune, or the shape of the checkpoint to resume."""
    shape_fields = ("cell_type", "hidden_size", "num_layers", "embedding_dim", "input_encoding")
    if checkpoint:
        config = CharRNNConfig.from_pretrained(checkpoint)
        return CharRNNForCausalLM(config)  # Trainer loads the checkpoint's weights into it
    if model_args.model_name_or_path:
        model = AutoModelForCausalLM.from_pretrained(
            model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code
        )
        ignored = [name for name in shape_fields if getattr(model_args, name) is not None]
        if ignored:
            logger.warning("Fine-tuning keeps the loaded model's shape; ignoring --%s.", ", --".join(ignored))
        if len(tokenizer) > model.config.vocab_size:
            if not model_args.extend_vocabulary:
                raise ValueError(
                    f"The tokenizer has {len(tokenizer)} tokens but the model {model_args.model_name_or_path!r} only "
                    f"{model.config.vocab_size}: use the tokenizer saved with the model (or --extend_vocabulary)."
                )
            # New rows for the added characters, initialised as transformers does (the old rows' mean and
            # covariance); the old rows stay. A one-hot model refuses, naming why.
            model.resize_token_embeddings(len(tokenizer))
        _set_regularization(model, given_regularization(model_args))
        return model
    values = {name: getattr(model_args, name) for name in (*shape_fields, *REGULARIZATION_FIELDS)}
    values = {name: MODEL_DEFAULTS[name] if value is None else value for name, value in values.items()}
    config = CharRNNConfig(
        vocab_size=len(tokenizer),
        tie_word_embeddings=model_args.tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        unk_token_id=tokenizer.unk_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **values,
    )
    return CharRNNForCausalLM(config)


def given_regularization(model_args: ModelArguments) -> dict[str, Any]:
    """The regularizers (`REGULARIZATION_FIELDS`) the command line set: a rate given (0 included), and
    `--variational_dropout` when on (a plain flag: off cannot be told from not given)."""
    return {name: value for name in REGULARIZATION_FIELDS
            if (value := getattr(model_args, name)) is not None and value is not False}


def _set_regularization(model, values: dict[str, Any]) -> None:
    """A loaded model's training-only regularizers (`REGULARIZATION_FIELDS`) set to `values`, config and modules."""
    for name, value in values.items():
        setattr(model.config, name, value)
    model.config.validate_charrnn_fields()
    if "dropout" in values:
        if model.config.num_layers > 1:
            model.model.rnn.dropout = values["dropout"]
        model.model.dropout.p = values["dropout"]


def data_identity(data_args: DataArguments) -> dict[str, Any]:
    """What the run trains on: named data, or the files with their fingerprints (both training paths)."""
    files = {}
    if data_args.train_file:
        files["train_file"] = text_files.fingerprint_files(data_args.train_file, "train")
    if data_args.validation_file:
        files["validation_file"] = text_files.fingerprint_files(data_args.validation_file, "validation")
    return {
        "dataset": None if data_args.train_file else (data_args.dataset_name or data_args.dataset),
        "dataset_config_name": data_args.dataset_config_name,
        **files,
        "validation_split_fraction": data_args.validation_split_fraction,
        "text_column": data_args.text_column,
        "streaming": _is_streaming(data_args),
        # only when set: the runs recorded before record mode keep their identity
        **({"records": data_args.records} if data_args.records != "none" else {}),
    }


def model_identity(model_args: ModelArguments) -> dict[str, Any]:
    """The model and tokenizer a run builds or loads (both training paths)."""
    identity = {name: getattr(model_args, name) for name in (
        "model_name_or_path", "tokenizer_name", "tokenizer", "min_frequency", "max_vocab", "cell_type",
        "hidden_size", "num_layers", "embedding_dim", "dropout", "input_encoding", "tie_word_embeddings",
    )}
    if model_args.extend_vocabulary:  # only when set: the runs recorded before the option keep their identity
        identity["extend_vocabulary"] = True
    identity.update({name: value for name, value in given_regularization(model_args).items()  # the same: only when set
                     if name != "dropout"})  # (dropout: in the list above)
    return identity


def recorded_data_arguments(output_dir: str | os.PathLike) -> tuple[DataArguments, int] | None:
    """
    The data a finished or running training folder recorded (its run.json), as DataArguments, and the seed its
    validation split was drawn with; None when the folder records none (a Hub model, a plain save_pretrained).
    """
    record = read_json_file(Path(output_dir) / RUN_FILE, "run record") if Path(output_dir).is_dir() else None
    recorded = (record or {}).get("identity", {}).get("data")
    if not recorded or not (recorded.get("dataset") or recorded.get("train_file")):
        return None
    paths = {role: [entry["path"] for entry in recorded[role]] for role in ("train_file", "validation_file")
             if recorded.get(role)}
    data_args = DataArguments(
        dataset=recorded.get("dataset") or "shakespeare",
        dataset_config_name=recorded.get("dataset_config_name"),
        train_file=paths.get("train_file"),
        validation_file=paths["validation_file"][0] if paths.get("validation_file") else None,
        validation_split_fraction=recorded.get("validation_split_fraction", 0.05),
        text_column=recorded.get("text_column", "text"),
    )
    return data_args, int(record["identity"].get("training", {}).get("seed", 42))
