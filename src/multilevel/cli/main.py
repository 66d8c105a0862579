"""``main(argv)``: the parser skeleton (the top-level parser, each command's parser
registered by its command module) and the run of one command.

Neither importing this module nor building the parser imports NumPy, pandas, JAX or
any other heavy library: each command imports what it needs when it runs, so that
``multilevel --help``, ``multilevel datasets``, ``--version`` and usage errors answer in
about 0.06 s instead of 2.7 s (tests/cli/test_cli_imports.py checks the imports).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from multilevel.cli import effects_commands, fit_commands, model_commands, workflow_commands
from multilevel.cli.io import EXIT_OK, exit_status


def version() -> str:
    """The installed package's version, read without importing the package's modules.

    Examples
    --------
    >>> version()  # doctest: +SKIP
    '0.1.0'
    """
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("multilevel")
    except PackageNotFoundError:  # running from a source tree that is not installed
        from multilevel import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The ``multilevel`` parser; each command's parser sets ``handler``, its function.

    Returns
    -------
    argparse.ArgumentParser

    Examples
    --------
    >>> args = build_parser().parse_args(["datasets"])  # doctest: +SKIP
    >>> args.handler(args)  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(
        prog="multilevel",
        description="Bayesian multilevel regression with lme4-style formulas (NUTS on JAX).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # The order of `multilevel --help`: fitting, the workflow, saved fits, then the rest.
    model_commands.add_fit_parser(commands)
    workflow_commands.add_pooling_parser(commands)
    workflow_commands.add_prior_check_parser(commands)
    workflow_commands.add_recover_parser(commands)
    workflow_commands.add_sbc_parser(commands)
    fit_commands.add_predict_parser(commands)
    fit_commands.add_loo_parser(commands)
    fit_commands.add_r2_parser(commands)
    fit_commands.add_hypothesis_parser(commands)
    fit_commands.add_compare_parser(commands)
    effects_commands.add_effects_parser(commands)
    model_commands.add_describe_parser(commands)
    model_commands.add_datasets_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0 success, 2 error, 3 a fit that did not converge, 1 an SBC that
        is not calibrated, 130 interrupted. Usage errors and ``--help`` raise
        ``SystemExit`` (argparse's own).

    Examples
    --------
    >>> main(["datasets"])  # doctest: +SKIP
    0
    """
    if (sys.argv[1:] if argv is None else list(argv))[:1] == ["--version"]:
        print(f"multilevel {version()}")  # returned as a status, not argparse's SystemExit
        return EXIT_OK

    def command() -> int:
        args = build_parser().parse_args(argv)  # exits 2 itself on usage errors
        return args.handler(args)

    return exit_status(command)


def run() -> None:
    """The ``multilevel`` command: ``main()``, then exit with its status.

    The process ends at once (``os._exit``) once its output is out, without Python's
    teardown of its modules and objects: after a fit that teardown (JAX's compiled
    programs, some 2,500 modules) took 0.6 s at a load of 2.5 on 2 cores, and 1-1.8 s at a
    load of 5 (``benchmarks/startup.py``'s "exit" column), a tenth of what a user waited
    for a whole radon fit with the compilation cache filled. Outputs are whole or absent
    (``atomic_write``) and closed before the command returns, and logging is shut down
    here, so there is nothing left to clean up. After Ctrl-C ending at once matters
    more: a KeyboardInterrupt that strikes while a thread pool starts a worker leaves
    that idle worker unknown to the pool, and Python's exit then waits for it forever
    (seen in 1 of 10 Ctrl-Cs at the start of XLA's first compile).
    """
    status = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to flush into
            stream.flush()
    os._exit(status)
