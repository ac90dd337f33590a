"""--extend_vocabulary: fine-tuning on text with new characters adds them to the tokenizer (old ids kept) and grows
the model's embedding and output layer (old rows kept), on both training paths; the result loads with plain
from_pretrained."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_charrnn import CharRNNConfig, CharRNNForCausalLM
from hf_charrnn.cli.train import main as train_command
from hf_charrnn.cli.train_accelerate import main as train_accelerate_command
from hf_charrnn.tokenization_charrnn import build_char_tokenizer, build_word_tokenizer, extend_char_tokenizer

OLD_TEXT = "the cat sat on the mat.\nthe dog sat on the log.\n" * 20
NEW_TEXT = "Zoë zoomed: ÅÅÅ! the cat sat.\n" * 40  # 6 new characters (Z z ë : Å !); Å the most frequent


def test_new_characters_are_appended_most_frequent_first_and_old_ids_stay():
    old = build_char_tokenizer([OLD_TEXT])
    extended, added = extend_char_tokenizer(old, [NEW_TEXT])
    assert set(added) == set(NEW_TEXT) - set(old.get_vocab())
    assert added[0] == "Å"  # 3 a line: the most frequent of the new characters
    assert [extended.convert_tokens_to_ids(c) for c in added] == list(range(len(old), len(old) + len(added)))
    for token, index in old.get_vocab().items():
        assert extended.convert_tokens_to_ids(token) == index
    ids = extended(NEW_TEXT, add_special_tokens=False)["input_ids"]
    assert extended.unk_token_id not in ids and extended.decode(ids) == NEW_TEXT
    assert extend_char_tokenizer(extended, [NEW_TEXT]) == (extended, [])  # nothing new: the same tokenizer
    with pytest.raises(ValueError, match="word-level"):
        extend_char_tokenizer(build_word_tokenizer([OLD_TEXT]), [NEW_TEXT])


def test_growing_keeps_the_old_characters_logits():
    torch.manual_seed(0)
    model = CharRNNForCausalLM(CharRNNConfig(vocab_size=20, hidden_size=16, embedding_dim=8, num_layers=2)).eval()
    ids = torch.tensor([[4, 7, 9, 19, 5]])
    before = model(ids).logits
    model.resize_token_embeddings(26)  # what --extend_vocabulary does to the model
    after = model(ids).logits
    assert model.config.vocab_size == 26 and after.shape[-1] == 26
    torch.testing.assert_close(after[..., :20], before)  # same state, same scores for the old characters
    assert torch.isfinite(model.get_input_embeddings().weight[20:]).all()
    one_hot = CharRNNForCausalLM(CharRNNConfig(vocab_size=20, hidden_size=16, input_encoding="one_hot"))
    with pytest.raises(ValueError, match="input_encoding='one_hot'"):
        one_hot.resize_token_embeddings(26)


@pytest.fixture
def base_model(tmp_path):
    folder = tmp_path / "base"
    tokenizer = build_char_tokenizer([OLD_TEXT])
    torch.manual_seed(0)
    config = CharRNNConfig(vocab_size=len(tokenizer), hidden_size=16, embedding_dim=8, num_layers=1,
                           eos_token_id=tokenizer.eos_token_id)
    CharRNNForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("command", [train_command, train_accelerate_command], ids=["train", "train-accelerate"])
def test_fine_tuning_with_extend_vocabulary_adds_the_new_characters_and_keeps_the_old_ids(command, base_model, tmp_path, capsys):
    train_file, validation_file = tmp_path / "new.txt", tmp_path / "new-validation.txt"
    train_file.write_text(NEW_TEXT, encoding="utf-8")
    validation_file.write_text(NEW_TEXT[:200], encoding="utf-8")
    old_tokenizer = AutoTokenizer.from_pretrained(base_model)
    output = tmp_path / "tuned"
    batch = ["--per_device_train_batch_size", "4"] if command is train_command else ["--batch_size", "4"]
    code = command(["--model_name_or_path", str(base_model), "--extend_vocabulary", "--train_file", str(train_file),
                    "--validation_file", str(validation_file), "--output_dir", str(output), "--max_steps", "2",
                    "--block_size", "16", *batch, "--sample_every_steps", "0", "--report_to", "none",
                    "--disable_tqdm", "true", "--eval_steps", "0", "--save_steps", "2"])
    assert code == 0
    printed = capsys.readouterr()
    log = printed.out + printed.err  # the commands' progress lines go to standard output
    assert "Added 6 characters to the vocabulary" in log and "not in the tokenizer's vocabulary" not in log

    tokenizer = AutoTokenizer.from_pretrained(output)
    model = AutoModelForCausalLM.from_pretrained(output)  # plain from_pretrained: config and weights agree
    assert len(tokenizer) == len(old_tokenizer) + 6 == model.config.vocab_size
    assert tokenizer.convert_tokens_to_ids("Å") == len(old_tokenizer)
    assert all(tokenizer.convert_tokens_to_ids(t) == i for t, i in old_tokenizer.get_vocab().items())


def test_extend_vocabulary_without_a_model_to_fine_tune_is_a_usage_error(tmp_path, capsys):
    train_file = tmp_path / "new.txt"
    train_file.write_text(NEW_TEXT, encoding="utf-8")
    code = train_command(["--extend_vocabulary", "--train_file", str(train_file), "--output_dir", str(tmp_path / "o")])
    assert code == 2 and "--extend_vocabulary grows the vocabulary of a model being fine-tuned" in capsys.readouterr().err
