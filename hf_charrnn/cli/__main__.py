"""`python -m hf_charrnn.cli COMMAND ...`: the same as the `hf-charrnn` command."""

from . import main

raise SystemExit(main())
