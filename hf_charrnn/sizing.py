"""Sized defaults: with `--max_train_minutes` and no model size, a model, batch and learning rate that fit the budget.

The rule, and the measurements behind it (2-core CPU, the embedded Shakespeare corpus, `hf-charrnn train`):

* **Batch and learning rate.** On a budget of minutes the number of updates matters more than their size: in
  one-minute runs, 16 blocks of 128 characters at 5e-3 reached 2.80 bits per character where 32 x 256 at 3e-3 was
  still at 3.44. Those small batches take a higher peak rate than 5e-3: after 2,000 steps of a 2 x 192 LSTM at 16 x 128
  (cosine schedule, clipping at 1), the held-out plays scored 2.634 bpc at 5e-3, 2.502 at 8e-3 and 2.521 at 1.2e-2.
  Budgets up to `SHORT_BUDGET_MINUTES` take 16 x 128 at 8e-3; longer ones the command's defaults, 64 blocks at 2e-3,
  whose larger, smoother updates pay off over hours.
* **The stateful-BPTT path's batch** (`hf-charrnn train-accelerate`) is the same 2,048 tokens a step, laid out as 64
  rows of 32 (`SHORT_BUDGET_STREAM_RECIPE`). Its rows carry their state from batch to batch, so a short truncation
  length costs no context, while it makes the step much cheaper (64 rows keep the CPU's matrix products busy and the
  sequential part is a quarter as long) and each update more varied: 16 rows move through only 16 places in the text
  together, and the weights drift with them (after 2,000 steps of a 2 x 256 at 8e-3 the held-out plays scored 2.43 to
  3.26 bpc by seed and warm-up, where the Trainer's shuffled blocks scored 2.40). With `--max_train_minutes 3` on a
  2-core Xeon with AMX (bf16 autocast chosen by both paths), a 2 x 256 at 8e-3 scored 2.205 bpc as 64 x 32 (8,723
  steps), 2.231 as 128 x 16, 2.270 as 32 x 64 and 2.313 as 16 x 128, against 2.278 for the Trainer path's 16 x 128.
  There a 64 x 32 step takes about half the time of a 16 x 128 one in bf16, and about 15 % less in fp32. With ten
  minutes (6-14 passes over the corpus) the layouts ended close (2.179 for 64 x 32, 2.162 for 32 x 64 and for
  16 x 128, one run each, char-rnn's clipping at 5 and no warm-up); what lifted the path there was the Trainer's
  warm-up (2 %) and clipping (at 1), now its defaults too (2.121 for the same 64 x 32 run). A
  record-by-record run (`--records`) carries no state and keeps 16 x 128; given rows (`--batch_size`) keep the
  default length, since the two were measured together.
* **Model size.** A larger model learns more per character it sees but sees fewer characters in the same time. The
  rule takes the largest 2- or 3-layer LSTM of `CANDIDATES` that (a) will see at least `TOKENS_PER_PARAMETER`
  training characters per parameter in the time the budget leaves for steps, its step timed here on the run's batch
  and in the precision the run will take (on a bf16 machine the faster of bf16 and fp32; on an AMX Xeon that picks a
  2 x 384 for the BPTT path's ten minutes, which scored 2.193 against the fp32-sized 2 x 256's 2.179 with the earlier
  defaults, and 2.067-2.076 with today's), and (b) has no more parameters than the training text has characters:
  char-rnn's advice, since a model that can store its corpus memorises it. The threshold is the demo's
  measurement: on the development machine its 2 x 256 LSTM (0.9 M parameters) sees about 8-10 characters per
  parameter in ten minutes and beat the default 2 x 512 (3.3 M parameters), which sees about a third of that; so a
  10-minute budget there picks the demo's model. On a faster machine or a longer budget the rule grows the model;
  on a small corpus the ceiling stops it: at most `PARAMETERS_PER_CHARACTER` (8) parameters per training character.
  A model that would go over its text `MANY_PASSES` (6) times or more gets a dropout (below), and
  regularised a larger one pays even when it sees fewer characters per parameter: at 1 MB (half of a 2-core machine
  each, the BPTT path) a 2x384 seeing 5.4 characters per parameter with dropout 0.3 scored 2.202 held-out bpc, a 2x512
  seeing 2.1 with 0.3 2.193, against 2.275 for the 2x256 seeing 26 with 0.39. So over many passes test (a) asks
  `TOKENS_PER_PARAMETER_OVER_MANY_PASSES` (3) characters per parameter; a corpus seen 2-5 times (the embedded one in
  ten minutes) keeps 8. The first thresholds (8 passes, 4 per parameter) put a 1 MB file's 2x384 on the edge of both
  on a 2-core AMD EPYC (9.4-9.8 passes, 4.3 characters per parameter): a step timed 7 % slower sized a 2x256 for
  26 passes instead, the model that had scored 2.275-2.311 against the 2x384's 2.19-2.23. These leave it half again
  of room on each, and still keep the 2x512 (1.8 per parameter there) out.
  It was char-rnn's one parameter per character, which held a 1 MB file to a 2x192 without dropout; with the
  dropout below a 2x384 or 2x512 scored 0.25 bpc better on held-out plays, and at 0.3 MB a 2x384 (7 parameters per
  character) beat the 2x192 a ceiling of 3 allowed (README, "A time budget, bf16 and sized defaults").
* **Dropout from the passes.** A run that goes over its text many times learns the text instead of the language.
  The plan knows the passes the chosen model makes (`SizedRecipe.passes`); `dropout_for_passes` gives none up to
  `PASSES_WITHOUT_DROPOUT`, then `DROPOUT_PER_DOUBLING` per doubling, at most `MAX_SIZED_DROPOUT`. Measured at 1 MB
  (ten minutes, half of a 2-core machine each): 2x192 without dropout (63 passes) 2.454 held-out bpc, with 0.3
  2.297; 2x384 with 0.3 (12 passes) 2.202; at 0.3 MB a 2x384 with 0.5 (32 passes) still overfitted by the end (its
  best step 3,208 of 4,010). Around ten passes less does no worse: at 1 MB with the whole of a 2-core AMD EPYC (a
  2x384, 10-13 passes), `hf-charrnn train` scored 2.193-2.229 with 0.12-0.18 against 2.229 with 0.23 (single runs of
  a path differ by about 0.035), `train-accelerate` 2.191-2.208 with 0.12-0.2 and 2.205 with 0.22; on an AMX Xeon
  0.24 beat 0.34 (2.192 and 2.217) and 0.28 beat 0.31. So dropout starts after
  `PASSES_WITHOUT_DROPOUT` (5) passes and climbs 0.15 a doubling: 10 passes 0.15, 20 0.3, 40 0.45, 54 and more 0.5;
  the embedded corpus (2-5 passes in ten minutes) trains with little or none, as its `bench_budget.py` figures were
  measured.
  AWD-LSTM's weight drop and locked masks (the config has both) learned too slowly for ten minutes and are not
  sized.
* **Weight decay over many passes.** A run that will go over its text `MANY_PASSES` (6) times or more also takes
  AdamW's decoupled weight decay, `SIZED_WEIGHT_DECAY` (0.05, a fraction of the learning rate per step: 8e-3 x 0.05 at
  the peak; biases excepted, as the Trainer does). At 1 MB with the whole of a 2-core AMD EPYC (a 2x384, 10-12
  passes, dropout 0.19-0.2), it took the held-out plays from 2.205 to 2.153 bpc on the Trainer path (same seed, 4,370
  and 4,367 steps) and from 2.187-2.206 (four runs) to 2.155 on the stateful-BPTT path: more than a single run's
  noise on both. The embedded corpus (5.2-5.4 passes in ten minutes there) keeps none, as its figures were measured.

Explicit options always win: a given `--hidden_size`, `--num_layers`, `--embedding_dim`, batch size, learning rate,
`--dropout`, `--weight_decay` or (train-accelerate's) `--block_size` is kept, and a model being fine-tuned keeps its
shape. The choice and its reason go into the log and the summary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import math

import torch

from .configuration_charrnn import CharRNNConfig
from .modeling_charrnn import CharRNNForCausalLM
from .step_timing import training_step_seconds

CANDIDATES = ((2, 128, 32), (2, 192, 48), (2, 256, 64), (2, 384, 96), (2, 512, 128), (3, 512, 128), (3, 768, 192))
"""(num_layers, hidden_size, embedding_dim), smallest first."""
TOKENS_PER_PARAMETER = 8
MANY_PASSES = 6
"""A model that would go over its text this many times or more (and so takes a sized dropout) needs only
`TOKENS_PER_PARAMETER_OVER_MANY_PASSES` characters per parameter: regularised, a larger model generalises better."""
TOKENS_PER_PARAMETER_OVER_MANY_PASSES = 3
PARAMETERS_PER_CHARACTER = 8
"""The ceiling on model size: at most this many parameters per character of training text (the rule's test (b))."""
DROPOUT_PER_DOUBLING = 0.15
"""Dropout grows by this much each time the planned passes over the text double beyond `PASSES_WITHOUT_DROPOUT`."""
PASSES_WITHOUT_DROPOUT = 5
MAX_SIZED_DROPOUT = 0.5
SIZED_WEIGHT_DECAY = 0.05
"""AdamW's decoupled weight decay for a run that will go over its text `MANY_PASSES` times or more; none below (see the
module docstring)."""
SHORT_BUDGET_MINUTES = 60
SHORT_BUDGET_RECIPE = dict(batch_size=16, learning_rate=8e-3)
SHORT_BUDGET_STREAM_RECIPE = dict(batch_size=64, block_size=32, learning_rate=8e-3)
"""The stateful-BPTT path's short-budget recipe: rows of the stream carrying their state (see the module docstring)."""
LONG_BUDGET_RECIPE = dict(batch_size=64, learning_rate=2e-3)
"""Longer budgets: both commands' defaults (the stateful-BPTT path's rows of 128 tokens, also its default)."""
STEP_SHARE = 0.8
"""Of the time the budget has left when sizing, the share that goes to steps (the rest: evaluations, saving)."""


@dataclass(frozen=True)
class SizedRecipe:
    """What the rule chose (None: the option was given, or the model is fine-tuned) and why."""

    num_layers: int | None
    hidden_size: int | None
    embedding_dim: int | None
    batch_size: int | None
    learning_rate: float | None
    reason: str
    block_size: int | None = None  # the stateful-BPTT path's truncation length; the Trainer path's blocks keep theirs
    dropout: float | None = None  # sized from the planned passes over the text (None: given, or not sized)
    passes: float | None = None  # the planned passes over the training text of the chosen model
    weight_decay: float | None = None  # sized from the passes (None: given, not sized, or planned before it was)

    def as_dict(self) -> dict:
        return asdict(self)

    def model_arguments(self, model_args):
        """`model_args` with the sized model shape filled in (unchanged when the shape was not sized)."""
        if self.dropout is not None and model_args.dropout is None:
            model_args = replace(model_args, dropout=self.dropout)
        if self.hidden_size is None:
            return model_args
        return replace(model_args, num_layers=self.num_layers, hidden_size=self.hidden_size,
                       embedding_dim=self.embedding_dim)


def batch_recipe(minutes: float, carried_state: bool = False) -> dict:
    """The batch and peak learning rate for a budget of `minutes`, and for a run whose rows carry their state
    (`carried_state`: the stateful-BPTT path) the truncation length too (see the module docstring)."""
    if minutes > SHORT_BUDGET_MINUTES:
        return {**LONG_BUDGET_RECIPE, **({"block_size": 128} if carried_state else {})}
    return dict(SHORT_BUDGET_STREAM_RECIPE if carried_state else SHORT_BUDGET_RECIPE)


def dropout_for_passes(passes: float) -> float:
    """The dropout for a run that goes over its text `passes` times: none up to `PASSES_WITHOUT_DROPOUT`, then
    `DROPOUT_PER_DOUBLING` more for each doubling, at most `MAX_SIZED_DROPOUT` (see the module docstring)."""
    if passes <= PASSES_WITHOUT_DROPOUT:
        return 0.0
    return round(min(MAX_SIZED_DROPOUT, DROPOUT_PER_DOUBLING * math.log2(passes / PASSES_WITHOUT_DROPOUT)), 2)


def weight_decay_for_passes(passes: float) -> float:
    """`SIZED_WEIGHT_DECAY` for a run that goes over its text `MANY_PASSES` times or more, else none."""
    return SIZED_WEIGHT_DECAY if passes >= MANY_PASSES else 0.0


def characters_per_parameter_needed(passes: float) -> float:
    """The rule's test (a): `TOKENS_PER_PARAMETER` training characters per parameter, or, for a model that would go
    over its text `MANY_PASSES` times or more, `TOKENS_PER_PARAMETER_OVER_MANY_PASSES` (see the module docstring)."""
    return TOKENS_PER_PARAMETER_OVER_MANY_PASSES if passes >= MANY_PASSES else TOKENS_PER_PARAMETER


def _parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def choose_model_size(vocab_size: int, train_characters: int, step_seconds_available: float, batch_size: int,
                      block_size: int, cell_type: str = "lstm", device=None,
                      bf16_options: tuple[bool, ...] = (False,)) -> tuple[tuple[int, int, int], str, float]:
    """The largest of `CANDIDATES` that passes both tests of the module docstring, timed here in each precision the
    run may take (`bf16_options`, `precision.precisions_to_time`: the faster counts, as the run will take it); the
    reason (the smallest when none passes); and the passes over the text it plans."""
    chosen, reason, passes_over_text = None, "", 0.0
    ceiling = PARAMETERS_PER_CHARACTER * train_characters
    for layers, hidden, embedding in CANDIDATES:
        with torch.random.fork_rng(devices=[]):  # the run's model starts from the same random numbers as without
            model = CharRNNForCausalLM(CharRNNConfig(vocab_size=vocab_size, cell_type=cell_type, hidden_size=hidden,
                                                     num_layers=layers, embedding_dim=embedding))
        parameters = _parameters(model)
        if parameters > ceiling and chosen is not None:
            break
        step, bf16 = min((training_step_seconds(model, batch_size, block_size, bf16=bf16, steps=2, device=device),
                          bf16) for bf16 in bf16_options)
        seen = step_seconds_available / step * batch_size * block_size
        fits = seen >= characters_per_parameter_needed(seen / train_characters) * parameters and parameters <= ceiling
        if not fits and chosen is not None:
            break
        chosen, passes_over_text = (layers, hidden, embedding), seen / train_characters
        reason = (f"{layers}x{hidden} ({parameters / 1e6:.2f} M parameters) sees about {seen / 1e6:.1f} M characters "
                  f"in the budget ({seen / parameters:.0f} per parameter at {step * 1e3:.0f} ms a step"
                  f"{' in bf16' if bf16 else ''}; the corpus has {train_characters / 1e6:.1f} M: "
                  f"{passes_over_text:.0f} passes)" + ("" if fits else "; the smallest candidate"))
        if not fits:
            break
    return chosen, reason, passes_over_text


def size_for_budget(minutes: float, seconds_left: float, model_args, given_batch: int | None,
                    given_learning_rate: float | None, vocab_size: int, train_characters: int,
                    given_block_size: int | None, device=None, model_given: bool = False,
                    carried_state: bool = False, bf16_options: tuple[bool, ...] = (False,),
                    given_weight_decay: float | None = None) -> SizedRecipe:
    """The sized defaults for what was not given (`given_*` None); the model size, its dropout and the weight decay
    only for a new model (not `model_given`, not fine-tuned) whose shape options are all unset. The Trainer path always
    gives its block size; the stateful-BPTT path (`carried_state`) leaves it to the recipe unless the user set it."""
    recipe = batch_recipe(minutes, carried_state)
    batch = None if given_batch else recipe["batch_size"]
    learning_rate = None if given_learning_rate else recipe["learning_rate"]
    block_size = None if given_block_size else recipe.get("block_size")
    shape_given = any(getattr(model_args, name) is not None for name in ("hidden_size", "num_layers", "embedding_dim"))
    if model_given or model_args.model_name_or_path or shape_given:
        why = "fine-tuning keeps the model's shape" if model_args.model_name_or_path else "the model size was given"
        return SizedRecipe(None, None, None, batch, learning_rate, why, block_size)
    (layers, hidden, embedding), reason, passes = choose_model_size(
        vocab_size, train_characters, seconds_left * STEP_SHARE, given_batch or batch, given_block_size or block_size,
        model_args.cell_type or "lstm", device, bf16_options)
    dropout = weight_decay = None
    if model_args.dropout is None:
        dropout = dropout_for_passes(passes)
        reason += f"; dropout {dropout:g} for {passes:.0f} passes over the text"
    if given_weight_decay is None:
        weight_decay = weight_decay_for_passes(passes)
        reason += f", weight decay {weight_decay:g}" if weight_decay else ""
    return SizedRecipe(layers, hidden, embedding, batch, learning_rate, reason, block_size, dropout, round(passes, 2),
                       weight_decay)
