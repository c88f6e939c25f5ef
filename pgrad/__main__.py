"""`python -m pgrad ...`: the same as the `pgrad` command."""

from pgrad.cli import entry

entry()
