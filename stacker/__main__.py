"""``python -m stacker``."""

from .cli import run

run()
