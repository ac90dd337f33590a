"""``PYTHONPATH=tests python -m fake_hub [--port N] [--user NAME]``: the loopback Hub in the foreground."""

from .server import main

main()
