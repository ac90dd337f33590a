"""`hf-charrnn explain`: one self-contained HTML page that shows what a model computes on a text (each unit's
activation as colours, the next-token guesses on hover, the units that track quotes, brackets, line position...).
The numbers are `hf_charrnn.explain.activations`; the page is `hf_charrnn.explain.report`; this module reads the
text, checks the options and writes the file."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import text_files
from ..explain import activations
from ..explain.report import estimated_page_megabytes, is_explain_report, render_report
from ..model_loading import load_model_and_tokenizer
from ..states import model_fingerprint
from ..tokenization_charrnn import count_unknown_characters
from .help_format import parse_model_command
from .score import warn_about_unknown_characters
from .text_input import text_from_option

DEFAULT_MAX_CHARACTERS = 20_000
MAX_PAGE_MEGABYTES = 300  # the default 2x512 LSTM at 20,000 characters: up to 55 MB


@dataclass
class ExplainArguments:
    model_name_or_path: str = field(
        metadata={"help": "A saved model folder (from save_pretrained or a training run) or a Hub repo id."}
    )
    text: str | None = field(default=None, metadata={"help": "The text to look at ('-' reads standard input)."})
    text_file: str | None = field(default=None, metadata={"help": "A UTF-8 text file to look at (its beginning, up "
                                                                  "to --max_characters)."})
    output: str = field(default="explain.html", metadata={"help": "The HTML file to write (a previous report there "
                                                                  "is replaced; any other file is kept)."})
    max_characters: int = field(
        default=DEFAULT_MAX_CHARACTERS,
        metadata={"help": "Look at this many characters at most (a longer text is cut, with a warning). The page "
                          "holds every unit's activation at every character: up to 2 KB per character for a 2x512 "
                          "LSTM."},
    )
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: cuda when available)."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit)."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow loading model code from the checkpoint (needed without hf_charrnn)."}
    )

    def __post_init__(self):
        if (self.text is None) == (self.text_file is None):
            raise ValueError("Say what text to look at: --text TEXT or --text_file FILE (one of them).")
        if self.max_characters < 1:
            raise ValueError(f"--max_characters must be at least 1, got {self.max_characters}.")
        output = Path(self.output)
        if output.is_dir():
            raise ValueError(f"--output {self.output} is a folder; give a file name, e.g. {output / 'explain.html'}.")
        if not output.parent.is_dir():
            raise ValueError(f"--output {self.output}: the folder {output.parent} does not exist; create it first.")
        if output.exists() and not is_explain_report(output):
            raise ValueError(f"--output {self.output} exists and is not a page of hf-charrnn explain; it is left as "
                             "it is. Choose another file name (or remove that file).")


def text_to_explain(args: ExplainArguments) -> str:
    """The text, cut to `max_characters` with a warning; checked (exists, UTF-8, not empty) before the model loads.
    Only the start of a file is read: a page holds at most `max_characters` characters."""
    if args.text_file is None:
        text = text_from_option(args.text, "--text")
    else:
        text = text_files.read_text_start(args.text_file, args.max_characters, "text")
    if not text:
        raise ValueError("The text to look at is empty.")
    if len(text) > args.max_characters:
        print(f"warning: looking at the first {args.max_characters:,} characters only (--max_characters).",
              file=sys.stderr)
        text = text[: args.max_characters]
    return text


def main(argv: list[str] | None = None) -> int:
    """`hf-charrnn explain MODEL --text T | --text_file F [--output explain.html]`: write the page."""
    args = parse_model_command(
        ExplainArguments, argv, prog="hf-charrnn explain",
        description="See inside a CharRNN checkpoint: write one self-contained HTML page (no network needed to open "
        "it) showing a text coloured by any unit's activation (hidden or cell state, any layer) or by surprisal, the "
        "model's top-5 next characters on hover, and the units that track quotes, brackets, line position, words and "
        "line starts. Usage: explain MODEL --text_file FILE [--output explain.html].",
    )
    text = text_to_explain(args)
    model, tokenizer = load_model_and_tokenizer(args.model_name_or_path, revision=args.revision, device=args.device,
                                                trust_remote_code=args.trust_remote_code)
    check_page_size(model.config, len(text))
    warn_about_unknown_characters(tokenizer, count_unknown_characters(tokenizer, [text]))
    acts = activations(model, text, tokenizer=tokenizer)
    page = render_report(acts, tokenizer, model_name=shown_model_name(args.model_name_or_path), config=model.config,
                         model_fingerprint=model_fingerprint(model))
    Path(args.output).write_text(page, encoding="utf-8")
    size = Path(args.output).stat().st_size
    print(f"wrote {args.output} ({len(text):,} characters, {size / 2**20:.1f} MB): open it in a web browser; it needs "
          "no network.")
    return 0


def check_page_size(config, characters: int) -> None:
    """Refuse a page too large for a browser to open comfortably, before computing it, and say how much text fits."""
    megabytes = estimated_page_megabytes(config, characters)
    if megabytes > MAX_PAGE_MEGABYTES:
        fits = int(characters * MAX_PAGE_MEGABYTES / megabytes)
        raise ValueError(f"A page of {characters:,} characters of this model ({config.num_layers} x "
                         f"{config.hidden_size} {config.cell_type}) would be up to {megabytes:,.0f} MB, more than a "
                         f"browser opens comfortably; use --max_characters {fits:,} or less.")


def shown_model_name(name: str) -> str:
    """A local folder by its own name (a page may be shared: no local paths in it), a Hub id as it is."""
    folder = Path(name).expanduser()
    return folder.resolve().name if folder.is_dir() else name
