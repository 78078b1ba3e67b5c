"""`python -m keel ...` runs the `keel` command."""

from keel.cli.main import run

run()
