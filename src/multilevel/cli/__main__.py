"""``python -m multilevel.cli``: the ``multilevel`` command."""

from multilevel.cli.main import run

if __name__ == "__main__":
    run()
