"""Sampling text from a trained model, streamed to the terminal as it is produced (`hf-charrnn generate`)."""

import sys

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

from .dynamic_evaluation import DynamicEvaluation, adapt_to
from .scoring import document_start_id
from .states import PrimedState, continue_from, prime
from .tokenization_charrnn import (
    count_unknown_characters,
    is_char_level,
    unknown_warning,
)


def encode_prompt(tokenizer, prompt: str, device) -> dict:
    """
    Token ids of the prompt; warns about characters the vocabulary lacks (they become <unk>). No prompt starts where
    a document starts in the training stream (after `<eos>`, `scoring.document_start_id`), as an id: its text
    (`<eos>`) would be read as five characters, since special-token strings in text stay text.
    """
    if not prompt:
        try:
            start = document_start_id(tokenizer)
        except ValueError:
            raise ValueError("This tokenizer has neither an EOS nor a BOS token to start from: give a --prompt.") \
                from None
        input_ids = torch.tensor([[start]], device=device)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    unit = "characters" if is_char_level(tokenizer) else "words"
    warning = unknown_warning(count_unknown_characters(tokenizer, [prompt]), unit=unit)
    if warning:
        print(f"warning (prompt): {warning}", file=sys.stderr)
    encoded = tokenizer(prompt, return_tensors="pt")
    return {name: tensor.to(device) for name, tensor in encoded.items()}


class StopOnText(StoppingCriteria):
    """
    Ends a sequence once its new tokens spell one of `stops`. transformers' `stop_strings` cannot serve here: it reads
    the vocabulary by decoding each token after the text "abcdef", which a character vocabulary without those letters
    turns into `<unk>` (a ValueError in StopStringCriteria). Decoding the last few tokens of each row is cheap.
    """

    def __init__(self, tokenizer, stops: list[str], prompt_length: int):
        self.tokenizer, self.stops, self.prompt_length = tokenizer, list(stops), prompt_length
        self.window = max(len(stop) for stop in self.stops)  # every token spells at least one character

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        start = max(self.prompt_length, input_ids.shape[1] - self.window)
        tails = self.tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
        return torch.tensor([any(stop in tail for stop in self.stops) for tail in tails], device=input_ids.device)


def primed_state(model, tokenizer, prompt: str, loaded: PrimedState | None = None,
                 as_record: bool = False, dynamic: DynamicEvaluation | None = None) -> PrimedState:
    """The state after reading `prompt`, or after `loaded`'s prompt and then `prompt`. `as_record`: the prompt is the
    beginning of a record (a document), read after `<eos>` as records are in training and texts are in `score`.
    `dynamic`: first adapt the weights to the prompt as dynamic evaluation reads it (`hf_charrnn.dynamic_evaluation`;
    they stay adapted: the caller restores them), then read it with those weights."""
    if loaded is not None:
        if dynamic is not None:
            raise ValueError("Dynamic evaluation adapts the weights to a prompt, and a saved state belongs to the "
                             "trained weights: give the whole prompt instead of a saved state.")
        more = encode_prompt(tokenizer, prompt, model.device)["input_ids"] if prompt else loaded.prompt_ids[:, :0]
        return prime(model, more, after=loaded)
    ids = encode_prompt(tokenizer, prompt, model.device)["input_ids"]  # no prompt: the document start alone
    if as_record and prompt:
        ids = torch.cat([torch.tensor([[document_start_id(tokenizer)]], device=ids.device), ids], dim=1)
    if dynamic is not None:
        adapt_to(model, ids[0], dynamic)
    return prime(model, ids)


def generate_from(model, tokenizer, state: PrimedState, stop_strings: list[str] | None = None, **options):
    """`model.generate()` continuing `state` (the prompt read once, whatever the number of sequences), ending each
    sequence after any of `stop_strings` (kept in the text). Returns the ids, the prompt's included."""
    if stop_strings:
        stop = StopOnText(tokenizer, stop_strings, state.prompt_ids.shape[1])
        options["stopping_criteria"] = StoppingCriteriaList([*options.get("stopping_criteria", []), stop])
    return continue_from(model, state, **options)


def sample(model, tokenizer, state: PrimedState, stream: bool = True, shown_from: int = 0, **options) -> list[str]:
    """Generate continuations of a primed prompt; print them as they come when `stream`. The texts returned (and
    printed) start at prompt token `shown_from`: 0 shows the whole prompt; a prompt continued from a saved state
    shows only what was added to it now."""
    samples = options.get("num_return_sequences", 1)
    streamer = None
    if stream and samples == 1 and options.get("num_beams", 1) == 1:
        print(tokenizer.decode(state.prompt_ids[0, shown_from:], skip_special_tokens=True), end="", flush=True)
        streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    output = generate_from(model, tokenizer, state, streamer=streamer, **options)
    texts = tokenizer.batch_decode(output[:, shown_from:], skip_special_tokens=True)
    if stream and streamer is None:
        for number, text in enumerate(texts, start=1):
            print(f"--- sample {number} ---\n{text}")
    return texts


def sample_records(model, tokenizer, state: PrimedState, num_return_sequences: int, **options) -> list[str]:
    """
    `num_return_sequences` records, each sampled from a primed state (the start of a document, or a prompt there:
    the records' beginning) until the model ends it with `<eos>`, as texts (a record is a document of the training
    data: a name, a line, ...). A record cut by `max_new_tokens` before its end is kept, with a warning that says
    how many were.
    """
    options.setdefault("do_sample", True)
    output = generate_from(model, tokenizer, state, num_return_sequences=num_return_sequences, **options)
    new_tokens = output[:, state.prompt_ids.shape[1]:]
    # A row that ended (at <eos>, or at a --stop text) is padded after its end by generate(); a cut one is not.
    ended = [id_ for id_ in (tokenizer.eos_token_id, model.generation_config.pad_token_id, tokenizer.pad_token_id)
             if id_ is not None]
    unfinished = int((~torch.isin(new_tokens, torch.tensor(ended, device=new_tokens.device))).all(dim=1).sum())
    if unfinished:
        limit = options.get("max_new_tokens", model.generation_config.max_new_tokens)
        print(f"warning: {unfinished} of {num_return_sequences} records did not end within {limit} new tokens (cut "
              "there); raise --max_new_tokens for longer records.", file=sys.stderr)
    return [text.rstrip("\n") for text in tokenizer.batch_decode(output, skip_special_tokens=True)]
