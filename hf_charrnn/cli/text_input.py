"""Text given on the command line (`--text`, `--prompt`): `-` reads standard input, and bytes that are not UTF-8 (a
shell's `$'\xff'`, a terminal or a piped file in another encoding) get an error that says so, not a traceback from
the tokenizer, which cannot encode them."""

from __future__ import annotations

import sys


def text_from_option(value: str, option: str) -> str:
    """The text of `option` (`-`: standard input, read whole), checked to be valid UTF-8."""
    try:
        text = sys.stdin.read() if value == "-" else value
        text.encode("utf-8")
    except UnicodeError as error:
        where = "standard input" if value == "-" else option
        raise ValueError(f"The text of {where} is not valid UTF-8 (character {error.start} comes from a byte in "
                         "another encoding). Convert it first, e.g. iconv -f latin1 -t utf-8.") from None
    return text
