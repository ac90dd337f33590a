"""`hf-charrnn push OUTPUT_DIR REPO_ID`: upload a training output folder to the Hub (`hf_charrnn.hub`)."""

import argparse

from ..hub import check_explain_report, check_push_folder, explain_report_url, push_output_dir
from ..model_card import DEFAULT_LICENSE, render_model_card


def main(argv: list[str] | None = None) -> int:
    """`hf-charrnn push OUTPUT_DIR REPO_ID`: upload a training output folder, with its model card."""
    parser = argparse.ArgumentParser(
        prog="hf-charrnn push",
        description="Upload a training output folder (model, tokenizer, remote code, model card, loss curve, and "
        "optionally a page of `hf-charrnn explain`) "
        "to the Hugging Face Hub in one commit. The endpoint is HF_ENDPOINT (default https://huggingface.co).",
    )
    parser.add_argument("output_dir", help="the output folder of `hf-charrnn train` / `train-accelerate`")
    parser.add_argument("repo_id", help="'namespace/name', or 'name' for a repo under the token's user")
    parser.add_argument("--private", action="store_true", help="create the repo private (if it does not exist)")
    parser.add_argument("--revision", default=None, help="branch to push to (created from main if missing)")
    parser.add_argument("--commit-message", default=None)
    parser.add_argument("--token", default=None, help="default: HF_TOKEN or the stored `hf auth login` token")
    parser.add_argument("--license", default=None, help=f"license in the model card (default {DEFAULT_LICENSE})")
    parser.add_argument("--explain-report", default=None, metavar="HTML",
                        help="also upload this page of `hf-charrnn explain` (as explain.html), linked from the card")
    parser.add_argument("--print-card", action="store_true", help="print the model card and upload nothing")
    args = parser.parse_args(argv)
    if args.print_card:
        check_push_folder(args.output_dir)
        if args.explain_report is not None:
            check_explain_report(args.explain_report, args.output_dir)
        url = explain_report_url(args.repo_id, args.revision) if args.explain_report is not None else None
        print(render_model_card(args.output_dir, args.repo_id, license=args.license, explain_report_url=url))
        return 0
    info = push_output_dir(args.output_dir, args.repo_id, private=args.private, revision=args.revision,
                           commit_message=args.commit_message, token=args.token, license=args.license,
                           explain_report=args.explain_report)
    print(f"pushed: {info.commit_url}")
    return 0
