"""LoRA adapters with PEFT: what they can wrap in a CharRNN, training with the real Trainer, saving and reloading."""

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator

from testing_utils import tiny_model
from hf_charrnn.tokenization_charrnn import build_char_tokenizer

TEXT = "the quick brown fox jumps over the lazy dog. " * 40
TARGETS = ["embeddings", "lm_head"]  # the input embedding and the output layer: nn.Embedding and nn.Linear


def blocks(tokenizer, length=32):
    ids = tokenizer(TEXT)["input_ids"]
    rows = [ids[start : start + length] for start in range(0, len(ids) - length, length)]
    return Dataset.from_dict({"input_ids": rows, "labels": rows})


def test_lora_on_the_input_and_output_layers_trains_saves_and_reloads(tmp_path):
    tokenizer = build_char_tokenizer([TEXT])
    base = tiny_model(vocab_size=len(tokenizer), hidden_size=32)  # a vocabulary the fast step would tabulate
    base.save_pretrained(tmp_path / "base")
    frozen = {name: parameter.clone() for name, parameter in base.named_parameters()}
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert any("embeddings.lora_embedding_A" in name for name in trainable)
    assert any("lm_head.lora_A" in name for name in trainable)

    arguments = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=30, learning_rate=2e-2,
                                  per_device_train_batch_size=8, report_to="none", save_strategy="no",
                                  logging_steps=1, use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=arguments, train_dataset=blocks(tokenizer),
                      data_collator=default_data_collator)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[-1] < losses[0]
    for name, parameter in model.base_model.model.named_parameters():  # only the adapters moved
        if "lora_" not in name:
            torch.testing.assert_close(parameter, frozen[name.replace(".base_layer", "")], rtol=0, atol=0)

    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    ids = torch.tensor([tokenizer("the quick brown")["input_ids"]])
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=ids).logits
        # Decoding steps call the adapted embedding rather than tabulating the frozen one (the model's fast step).
        cache, steps = None, []
        for position in range(ids.shape[1]):
            output = model(input_ids=ids[:, position : position + 1], cache=cache, use_cache=True)
            cache = output.cache
            steps.append(output.logits)
        torch.testing.assert_close(torch.cat(steps, dim=1), trained, rtol=1e-5, atol=1e-5)
        reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "base"),
                                             tmp_path / "adapter").eval()
        torch.testing.assert_close(reloaded(input_ids=ids).logits, trained, rtol=0, atol=0)
        merged = reloaded.merge_and_unload()
        torch.testing.assert_close(merged(input_ids=ids).logits, trained, rtol=1e-5, atol=1e-5)
        generated = reloaded.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=10,
                                      do_sample=False)
    assert generated.shape == (1, ids.shape[1] + 10)


def test_peft_cannot_wrap_the_recurrent_layers_and_says_so():
    """README: PEFT's LoRA targets nn.Linear, nn.Embedding, convolutions and attention, not nn.LSTM/GRU/RNN."""
    with pytest.raises(ValueError, match="LSTM.*is not supported"):
        get_peft_model(tiny_model(), LoraConfig(r=4, target_modules=["rnn"]))
