"""Running the CLI in-process for tests (imported by the CLI tests, not collected)."""

import contextlib
import io

from multilevel import cli


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """``cli.main`` in-process, returning (status, stdout, stderr); works in any scope."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(argv)
    return status, out.getvalue(), err.getvalue()
