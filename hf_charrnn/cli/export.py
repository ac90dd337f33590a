"""`hf-charrnn export MODEL --format onnx`: ONNX graphs that sample text without PyTorch (`hf_charrnn.export`)."""

import argparse
import json
from pathlib import Path

from ..model_loading import load_model_and_tokenizer

FORMATS = ("onnx",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-charrnn export",
        description="Export a trained model: ONNX graphs of the decode step and the prompt pass (token ids and the "
        "recurrent state in, logits and the new state out), checked against PyTorch with onnxruntime before "
        "anything is reported. Needs pip install 'hf_charrnn[onnx]'.",
    )
    parser.add_argument("model", help="a folder written by `hf-charrnn train`, or a Hub id such as user/name")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="what to export to (default: onnx)")
    parser.add_argument("--output_dir", help="where the graphs, tokenizer and config go (default: MODEL-onnx for a "
                        "folder, NAME-onnx for a Hub id)")
    parser.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in --output_dir")
    parser.add_argument("--revision", help="Hub branch, tag or commit to load")
    return parser


def output_folder(args: argparse.Namespace) -> Path:
    """--output_dir, or MODEL-onnx; a folder holding an earlier export needs --overwrite."""
    from ..export import GRAPHS

    folder = Path(args.output_dir or f"{args.model.rstrip('/').split('/')[-1]}-{args.format}")
    earlier = [f"{name}.onnx" for name in GRAPHS if (folder / f"{name}.onnx").exists()]
    if earlier and not args.overwrite:
        raise ValueError(f"{str(folder)!r} already holds an export ({', '.join(earlier)}): pass --overwrite to "
                         "replace it, or choose another --output_dir.")
    return folder


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..export import check_onnx_installed, export_onnx

    check_onnx_installed()
    folder = output_folder(args)
    model, tokenizer = load_model_and_tokenizer(args.model, revision=args.revision, device="cpu")
    report = export_onnx(model, tokenizer, folder, opset=args.opset)
    for name, difference in report.max_abs_difference.items():
        print(f"{name}.onnx: onnxruntime matches PyTorch (max abs difference {difference:.1e})")
    for note in report.notes:
        print(f"note: {note}")
    print(f"exported to {report.output_dir}: inputs {', '.join(report.input_names)}; "
          f"outputs {', '.join(report.output_names)}")
    print(json.dumps({"output_dir": report.output_dir, "files": report.files}))
    return 0
