"""The exit codes of every `hf-charrnn` command, in one table (the shell's conventions)."""

import signal

EXIT_OK = 0
EXIT_BUG = 1  # a traceback that says it is a bug in hf_charrnn
EXIT_DIVERGED = 1  # training stopped on a non-finite loss; the message names the step and the last good checkpoint
EXIT_USER_ERROR = 2  # bad options, files or data: one `error:` line that names the problem and the fix
EXIT_SIGINT = 128 + signal.SIGINT  # 130: stopped by Ctrl-C (after saving a checkpoint, when training)
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143: stopped by SIGTERM (after saving a checkpoint)
