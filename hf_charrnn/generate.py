"""Sampling text from a trained model, streamed to the terminal as it is produced (`hf-charrnn generate`)."""

import sys

import torch
from transformers import TextStreamer

from .tokenization_charrnn import (
    count_unknown_characters,
    is_char_level,
    unknown_warning,
)


def encode_prompt(tokenizer, prompt: str, device) -> dict:
    """
    Token ids of the prompt; warns about characters the vocabulary lacks (they become <unk>). No prompt starts from
    the tokenizer's BOS token (or EOS: a new document starts after one in the training stream), as an id: its text
    (`<eos>`) would be read as five characters, since special-token strings in text stay text.
    """
    if not prompt:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise ValueError("This tokenizer has neither a BOS nor an EOS token to start from: give a --prompt.")
        input_ids = torch.tensor([[start]], device=device)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    unit = "characters" if is_char_level(tokenizer) else "words"
    warning = unknown_warning(count_unknown_characters(tokenizer, [prompt]), unit=unit)
    if warning:
        print(f"warning (prompt): {warning}", file=sys.stderr)
    encoded = tokenizer(prompt, return_tensors="pt")
    return {name: tensor.to(device) for name, tensor in encoded.items()}


def sample(model, tokenizer, prompt: str, stream: bool = True, **options) -> list[str]:
    """Generate continuations of `prompt` (the prompt included); print them as they come when `stream`."""
    inputs = encode_prompt(tokenizer, prompt, model.device)
    samples = options.get("num_return_sequences", 1)
    streamer = TextStreamer(tokenizer, skip_special_tokens=True) if stream and samples == 1 and options.get("num_beams", 1) == 1 else None
    output = model.generate(**inputs, streamer=streamer, **options)
    texts = tokenizer.batch_decode(output, skip_special_tokens=True)
    if stream and streamer is None:
        for number, text in enumerate(texts, start=1):
            print(f"--- sample {number} ---\n{text}")
    return texts
