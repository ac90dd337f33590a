"""A trained model as ONNX files that sample text without PyTorch (`hf-charrnn export MODEL --format onnx`).

A recurrent model needs two graphs, both `(input_ids, state) -> (logits of the last position, new state)`:
- `decode_step.onnx`: one token per row (the per-layer cell kernels), what a sampling loop calls per character;
- `prompt.onnx`: any number (at least 2) of tokens per row at once (ONNX's LSTM / GRU operators), for the prompt.
  torch's exporter unrolls a plain tanh/ReLU RNN over time instead, which would fix the prompt length, so for those
  cells there is no prompt graph (a note says so) and prompts go through the decode step.
The state is `hidden` (and `cell` for an LSTM), `(num_layers, batch, hidden_size)`, zeros to start; batch and prompt
length are dynamic. The tokenizer and config are saved next to the graphs, so the folder is self-contained, and
`onnx_export.json` records the inputs, outputs and the check below.

Nothing is reported as exported before onnxruntime has loaded both graphs and reproduced PyTorch's logits and states
on inputs other than the ones traced (another batch size and prompt length, a random state) within `TOLERANCE`.
Export needs the `onnx` extra (`pip install 'hf_charrnn[onnx]'`: onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .modeling_charrnn import CharRNNCache

TOLERANCE = 1e-4  # largest absolute difference from PyTorch accepted, on logits and states
GRAPHS = {"decode_step": 1, "prompt": 8}  # graph name -> tokens per row of the example it is traced with
RECORD_FILE = "onnx_export.json"


class ExportCheckError(RuntimeError):
    """onnxruntime did not reproduce PyTorch's numbers: the exported graph is wrong (a bug, not a user error)."""


class StatefulLogits(nn.Module):
    """`(input_ids, hidden[, cell]) -> (logits of the last position, new hidden[, new cell])`: the exported function."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, ...]:
        output = self.model(input_ids=input_ids, cache=CharRNNCache(hidden, cell), use_cache=True, logits_to_keep=1)
        return (output.logits[:, -1], *output.cache.tensors)


@dataclass
class ExportReport:
    output_dir: str
    files: list[str]
    input_names: list[str]
    output_names: list[str]
    max_abs_difference: dict[str, float]
    opset: int | None
    notes: list[str]


def state_names(model) -> list[str]:
    return ["hidden", "cell"] if model.config.cell_type == "lstm" else ["hidden"]


def graph_names(model) -> tuple[list[str], list[str]]:
    """The graphs' input and output names: `input_ids` and the state in; `logits` and the new state out."""
    names = state_names(model)
    return ["input_ids", *names], ["logits", *(f"new_{name}" for name in names)]


def check_onnx_installed() -> None:
    """A clear error naming the extra when the ONNX packages are missing."""
    missing = []
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ValueError(f"Exporting to ONNX needs {', '.join(missing)}: pip install 'hf_charrnn[onnx]'.")


def _example_inputs(model, batch: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    ids = torch.randint(0, model.config.vocab_size, (batch, length), generator=generator)
    shape = (model.config.num_layers, batch, model.config.hidden_size)
    return (ids, *(torch.randn(shape, generator=generator) * 0.5 for _ in state_names(model)))


def _export_graph(wrapper: StatefulLogits, path: Path, tokens: int, opset: int | None) -> None:
    """torch.onnx's exporter (torch.export underneath), batch dynamic, and the length too for the prompt graph."""
    input_names, output_names = graph_names(wrapper.model)
    batch = torch.export.Dim("batch", min=1)
    ids_shape = {0: batch} if tokens == 1 else {0: batch, 1: torch.export.Dim("length", min=2)}
    example = _example_inputs(wrapper.model, 2, tokens, torch.Generator().manual_seed(0))
    with torch.no_grad(), warnings.catch_warnings(), _quiet_logger("torch.onnx"):
        warnings.simplefilter("ignore")  # the exporter's notes about its own internals, not about this model
        program = torch.onnx.export(
            wrapper, example, input_names=input_names, output_names=output_names,
            dynamic_shapes=(ids_shape, *({1: batch} for _ in input_names[1:])), opset_version=opset, dynamo=True,
            verbose=False,
        )
    program.save(str(path))


@contextlib.contextmanager
def _quiet_logger(name: str):
    """Only errors from `name` while the block runs (the ONNX exporter logs every optional op it skips)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _length_is_dynamic(path: Path) -> bool:
    """Whether the graph's input_ids take any length (a named dimension), not only the traced one."""
    import onnx

    dimension = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[1]
    return bool(dimension.dim_param)


def check_against_pytorch(wrapper: StatefulLogits, path: Path, tokens: int) -> float:
    """Largest absolute difference between onnxruntime and PyTorch on fresh inputs (3 rows, another length)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = _example_inputs(wrapper.model, 3, 1 if tokens == 1 else 13, torch.Generator().manual_seed(1))
    feed = {arg.name: tensor.numpy() for arg, tensor in zip(session.get_inputs(), inputs)}
    with torch.no_grad():
        expected = wrapper(*inputs)
    produced = session.run(None, feed)
    return max(float(abs(torch.from_numpy(got) - want).max()) for got, want in zip(produced, expected))


def export_onnx(model, tokenizer, output_dir: str | Path, opset: int | None = None) -> ExportReport:
    """Write both graphs to `output_dir`, check them with onnxruntime, save the tokenizer and config; the report."""
    check_onnx_installed()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if model.dtype != torch.float32 or model.device.type != "cpu":  # the graphs are float32 on the CPU
        model = copy.deepcopy(model).float().cpu()
    wrapper = StatefulLogits(model).eval()
    differences, notes = {}, []
    for name, tokens in GRAPHS.items():
        path = output_dir / f"{name}.onnx"
        _export_graph(wrapper, path, tokens, opset)
        if tokens > 1 and not _length_is_dynamic(path):
            path.unlink()
            notes.append(f"no {path.name}: the exporter unrolls a {model.config.cell_type} layer over time, so the "
                         "graph would take one fixed prompt length; feed the prompt to decode_step.onnx token by token")
            continue
        differences[name] = check_against_pytorch(wrapper, path, tokens)
        if differences[name] > TOLERANCE:
            raise ExportCheckError(f"{path.name}: onnxruntime differs from PyTorch by {differences[name]:.2e} "
                                   f"(more than {TOLERANCE:g}); the exported graph is wrong.")
    model.config.save_pretrained(output_dir)
    model.generation_config.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    input_names, output_names = graph_names(model)
    report = ExportReport(
        output_dir=str(output_dir), files=sorted({p.name for p in output_dir.iterdir()} | {RECORD_FILE}),
        input_names=input_names, output_names=output_names,
        max_abs_difference=differences, opset=opset, notes=notes,
    )
    (output_dir / RECORD_FILE).write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return report
