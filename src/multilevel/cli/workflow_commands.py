"""The workflow commands: ``pooling``, ``prior-check``, ``recover`` and ``sbc``; their
parsers, and the reading of their own options (``--truth``, ``--cluster``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from multilevel.cli.io import (
    EXIT_NOT_CALIBRATED,
    EXIT_OK,
    CliError,
    check_writable,
    reported_warnings,
    write_plot,
    write_table,
)
from multilevel.cli.model_options import build_model, model_arguments, model_parser
from multilevel.cli.sampler_options import sampler_options, sampler_parser
from multilevel.options import SBC_CHAINS

if TYPE_CHECKING:
    import pandas as pd

# --------------------------------------------------------------------------- pooling


def add_pooling_parser(commands) -> None:
    """Register ``multilevel pooling`` with ``commands`` (``parser.add_subparsers()``)."""
    pooling = commands.add_parser(
        "pooling",
        parents=[model_parser(), sampler_parser()],
        help="complete, no and partial pooling side by side, with shrinkage",
        description="Fit the complete-, no- and partial-pooling variants of a one-factor "
        "model; print per-group estimates, shrinkage and LOO of each.",
    )
    pooling.add_argument("--plot", metavar="FILE", help="shrinkage plot (.png or .svg)")
    pooling.add_argument("--csv", metavar="FILE", help="write the per-group table as CSV")
    pooling.set_defaults(handler=cmd_pooling)


def cmd_pooling(args: argparse.Namespace) -> int:
    """``multilevel pooling``: fit and print the three pooling variants."""
    from multilevel.workflow.pooling import compare_pooling

    for path, flag in ((args.plot, "--plot"), (args.csv, "--csv")):
        check_writable(path, flag)
    with reported_warnings():
        arguments = model_arguments(args)
        # compare_pooling builds the three variants' models itself and takes no
        # centring choice: --centered is accepted here, as by every command that builds
        # a model, and not used.
        del arguments["centered"]
        if not isinstance(arguments["formula"], str):
            raise CliError(
                "pooling compares the group terms of the mean's formula; --formula-for "
                "(a family parameter's own formula) is not supported there. Compare the "
                "fits with `multilevel compare` instead."
            )
        comparison = compare_pooling(**arguments, progress=not args.quiet, **sampler_options(args))
        print(comparison)
    write_table(args.csv, comparison.table)
    write_plot(args.plot, lambda path: comparison.plot_shrinkage(path))
    return EXIT_OK


# --------------------------------------------------------------------------- prior-check


def add_prior_check_parser(commands) -> None:
    """Register ``multilevel prior-check`` with ``commands``."""
    prior_check = commands.add_parser(
        "prior-check",
        parents=[model_parser()],
        help="prior predictive check: what outcomes do the priors imply?",
        description="Simulate data sets from the priors and compare them with the data; "
        "warn, naming the prior, when most simulated outcomes are implausible.",
    )
    prior_check.add_argument("--n", type=int, default=500, help="simulated data sets (500)")
    prior_check.add_argument("--seed", type=int, default=0, help="default 0")
    prior_check.add_argument(
        "--plausible",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="plausible range of the outcome (default: from the data; see docs)",
    )
    prior_check.add_argument("--plot", metavar="FILE", help="write the plot (.png or .svg)")
    prior_check.set_defaults(handler=cmd_prior_check)


def cmd_prior_check(args: argparse.Namespace) -> int:
    """``multilevel prior-check``: simulate from the priors and print the check."""
    check_writable(args.plot, "--plot")
    with reported_warnings():
        model = build_model(args)
        check = model.sample_prior_predictive(n=args.n, seed=args.seed, plausible=args.plausible)
        print(check)
    write_plot(args.plot, lambda path: check.plot(path))
    return EXIT_OK


# --------------------------------------------------------------------------- recover


def add_recover_parser(commands) -> None:
    """Register ``multilevel recover`` with ``commands``."""
    recover_cmd = commands.add_parser(
        "recover",
        parents=[model_parser(), sampler_parser()],
        help="fake-data simulation and parameter recovery",
        description="Simulate data from known parameter values, refit, and report "
        "coverage of the 90% intervals and z-scores.",
    )
    recover_cmd.add_argument(
        "--truth",
        action="append",
        metavar="NAME=VALUE",
        help="true value of a parameter (repeatable; all hyper-parameters needed); "
        "default: the data set's documented truth (e.g. cafe)",
    )
    recover_cmd.add_argument("--reps", type=int, default=20, help="replications (20)")
    recover_cmd.add_argument("--plot", metavar="FILE", help="write the plot (.png or .svg)")
    recover_cmd.add_argument("--csv", metavar="FILE", help="write the per-replication table")
    recover_cmd.set_defaults(handler=cmd_recover)


def cmd_recover(args: argparse.Namespace) -> int:
    """``multilevel recover``: simulate from the truth, refit, print the recovery."""
    from multilevel.workflow.recover import recover

    for path, flag in ((args.plot, "--plot"), (args.csv, "--csv")):
        check_writable(path, flag)
    with reported_warnings():
        model = build_model(args)
        truth = parse_truth(args.truth, model.data)
        result = recover(
            model,
            truth,
            n_reps=args.reps,
            progress=not args.quiet,
            **sampler_options(args),
        )
        print(result)
    write_table(args.csv, result.table)
    write_plot(args.plot, lambda path: result.plot(path))
    return EXIT_OK


def parse_truth(items: list[str] | None, data: pd.DataFrame) -> dict:
    """The ``--truth NAME=VALUE`` items; without them, the data's own documented truth.

    Parameters
    ----------
    items : list of str or None
        ``NAME=NUMBER`` texts.
    data : pandas.DataFrame
        The model's data; a built-in data set may document its truth in
        ``data.attrs["truth"]``.

    Returns
    -------
    dict
        Parameter name -> true value.

    Raises
    ------
    CliError
        An item is not ``NAME=NUMBER``, or no items and no documented truth.

    Examples
    --------
    >>> parse_truth(["Intercept=3.5", "sigma=0.5"], data)  # doctest: +SKIP
    {'Intercept': 3.5, 'sigma': 0.5}
    """
    if not items:
        truth = data.attrs.get("truth")
        if truth is None:
            raise CliError(
                "Give the true parameter values with --truth NAME=VALUE (repeatable), "
                "e.g. --truth 'Intercept=3.5' --truth 'sigma=0.5'."
            )
        return dict(truth)
    truth = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            truth[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise CliError(f"Cannot read --truth {item!r}; write it as NAME=NUMBER.")
    return truth


# --------------------------------------------------------------------------- sbc


def add_sbc_parser(commands) -> None:
    """Register ``multilevel sbc`` with ``commands``."""
    sbc_cmd = commands.add_parser(
        "sbc",
        parents=[model_parser(), sampler_parser(chains=SBC_CHAINS)],
        help="simulation-based calibration of the model and sampler",
        description="Draw parameters and data from the priors, refit, and test that the "
        "ranks of the truths among the posterior draws are uniform. Exits 1 when they "
        "are not.",
    )
    sbc_cmd.add_argument("--sims", type=int, default=100, help="simulations (100)")
    sbc_cmd.add_argument(
        "--processes", type=int, default=None, help="worker processes (default: CPUs)"
    )
    sbc_cmd.add_argument(
        "--cluster", metavar="ADDRESS", help="run on a Dask scheduler, e.g. tcp://host:8786"
    )
    sbc_cmd.add_argument(
        "--resume-dir", metavar="DIR", help="keep each simulation here; a rerun resumes"
    )
    sbc_cmd.add_argument("--plot", metavar="FILE", help="ECDF-difference plot (.png or .svg)")
    sbc_cmd.add_argument("--csv", metavar="FILE", help="write the ranks as CSV")
    sbc_cmd.set_defaults(handler=cmd_sbc)


def cmd_sbc(args: argparse.Namespace) -> int:
    """``multilevel sbc``: run simulation-based calibration and print the verdict.

    Returns
    -------
    int
        ``EXIT_OK`` when the ranks pass as uniform, else ``EXIT_NOT_CALIBRATED``.
    """
    from multilevel.workflow.sbc import sbc

    for path, flag in ((args.plot, "--plot"), (args.csv, "--csv")):
        check_writable(path, flag)
    options = sampler_options(args)
    options.setdefault("chains", SBC_CHAINS)
    client = _cluster_client(args.cluster)
    try:
        with reported_warnings():
            result = sbc(
                build_model(args),
                n_sims=args.sims,
                processes=args.processes,
                client=client,
                path=args.resume_dir,
                progress=not args.quiet,
                **options,
            )
            print(result)
    finally:
        if client is not None:
            client.close()
    write_table(args.csv, result.ranks)
    write_plot(args.plot, lambda path: result.plot(path))
    return EXIT_OK if result.passed() else EXIT_NOT_CALIBRATED


def _cluster_client(address: str | None):
    """A Dask client for ``--cluster ADDRESS`` (Dask is an optional extra)."""
    if address is None:
        return None
    try:
        from distributed import Client
    except ImportError:
        raise CliError("--cluster needs Dask: pip install 'multilevel[cluster]'.") from None
    try:
        return Client(address, timeout="10s")
    except OSError as exc:
        raise CliError(f"Cannot reach the Dask scheduler at {address!r}: {exc}") from None
