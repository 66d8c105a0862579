"""The commands on saved fits: ``predict``, ``loo`` and ``compare``; their parsers and
what they print and write."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from multilevel.cli.io import (
    EXIT_OK,
    CliError,
    check_writable,
    finite,
    load_fit,
    load_scored_fit,
    read_data,
    reported_warnings,
    write_json,
    write_output,
    write_plot,
    write_table,
)

if TYPE_CHECKING:
    import pandas as pd

# --------------------------------------------------------------------------- predict


def add_predict_parser(commands) -> None:
    """Register ``multilevel predict`` with ``commands`` (``parser.add_subparsers()``)."""
    predict = commands.add_parser(
        "predict",
        help="predict new data from a saved fit",
        description="Predict the rows of NEWDATA from a fit saved with `multilevel fit "
        "--save` (or fit.save): per row the mean, sd and 5/50/95% quantiles over the "
        "posterior draws. Levels of a grouping factor the fit never saw get effects drawn "
        "from the fitted population distribution (--groups sample) or zero effects "
        "(--groups population).",
    )
    predict.add_argument("fit", metavar="FIT", help="a saved fit (netCDF)")
    predict.add_argument(
        "newdata", metavar="NEWDATA", help="rows to predict: CSV, Parquet or a built-in data set"
    )
    predict.add_argument(
        "--data",
        metavar="ORIGINAL",
        help="the data the fit was made from: needed, since a saved fit keeps no "
        "covariates and NEWDATA must be encoded like the fitted data",
    )
    predict.add_argument(
        "--kind",
        default="mean",
        choices=["mean", "response", "link"],
        help="mean (default): expected response; response: new observations; link: "
        "linear predictor",
    )
    predict.add_argument(
        "--groups",
        default="sample",
        choices=["sample", "population"],
        help="sample (default): new levels drawn from the population; population: all "
        "group effects zero",
    )
    predict.add_argument(
        "--dpar",
        default=None,
        metavar="PARAM",
        help="predict a family parameter instead of the response, e.g. sigma (its value "
        "per row with --kind mean, its linear predictor with --kind link)",
    )
    predict.add_argument("--seed", type=int, default=0, help="default 0")
    predict.add_argument("--draws", type=int, default=None, help="draws per chain (default: all)")
    predict.add_argument("--out", metavar="FILE", help="write the table as CSV")
    predict.set_defaults(handler=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    """``multilevel predict``: print (and ``--out``) the per-row prediction summary."""
    from multilevel import tables

    check_writable(args.out, "--out")
    fit = load_fit(args.fit)
    newdata = read_data(args.newdata)
    original = read_data(args.data) if args.data is not None else None
    with reported_warnings():
        prediction = fit.predict(
            newdata,
            kind=args.kind,
            groups=args.groups,
            seed=args.seed,
            draws=args.draws,
            data=original,
            dpar=args.dpar,
        )
        table = prediction.summary()
        print(prediction)
        print()
        print(tables.plain_numbers(table).to_string(index=False))
    if args.out is not None:
        write_output(args.out, "--out", lambda temporary: table.to_csv(temporary, index=False))
    return EXIT_OK


# --------------------------------------------------------------------------- loo


def add_loo_parser(commands) -> None:
    """Register ``multilevel loo`` with ``commands``."""
    loo_cmd = commands.add_parser(
        "loo",
        help="PSIS-LOO (or WAIC) of a saved fit",
        description="Estimate how well a fit saved with `multilevel fit --save` (or "
        "fit.save) predicts new rows, by PSIS-LOO cross-validation on its stored pointwise "
        "log-likelihood: elpd_loo and its se, p_loo (effective parameters) against the "
        "nominal count, and Pareto k counts, naming the rows where PSIS-LOO is unreliable.",
    )
    loo_cmd.add_argument("fit", metavar="FIT", help="a saved fit (netCDF)")
    loo_cmd.add_argument(
        "--waic", action="store_true", help="WAIC instead of PSIS-LOO (cheaper, less robust)"
    )
    loo_cmd.add_argument("--json", metavar="FILE", help="write the numbers as JSON")
    loo_cmd.set_defaults(handler=cmd_loo)


def cmd_loo(args: argparse.Namespace) -> int:
    """``multilevel loo``: print (and ``--json``) PSIS-LOO or WAIC of a saved fit."""
    check_writable(args.json, "--json")
    fit = load_scored_fit(args.fit)
    with reported_warnings():
        result = fit.waic() if args.waic else fit.loo()
        print(result)
    write_json(args.json, elpd_report(result))
    return EXIT_OK


def elpd_report(result) -> dict:
    """The ``loo --json`` document: the numbers of an ``ELPDResult``.

    Parameters
    ----------
    result : ELPDResult
        From ``fit.loo()`` or ``fit.waic()``.

    Returns
    -------
    dict
        JSON-safe (non-finite numbers are None); ``pareto_k`` counts for LOO only.

    Examples
    --------
    >>> elpd_report(fit.loo())["method"]  # doctest: +SKIP
    'loo'
    """
    report = {
        "method": result.method,
        "elpd": finite(result.elpd),
        "se": finite(result.se),
        "p": finite(result.p),
        "n_params": result.n_params,
        "n_obs": result.n_obs,
        "n_samples": result.n_samples,
    }
    if result.method == "loo":
        report["pareto_k"] = dict(result.pareto_k)
    report["warning"] = result.warning
    return report


# --------------------------------------------------------------------------- compare


def add_compare_parser(commands) -> None:
    """Register ``multilevel compare`` with ``commands``."""
    compare_cmd = commands.add_parser(
        "compare",
        help="rank saved fits of the same data by elpd (PSIS-LOO or WAIC)",
        description="Rank two or more saved fits of the same data by expected log "
        "predictive density (elpd), best first: each fit's elpd and se, its difference to "
        "the best fit with the standard error of that difference, effective and nominal "
        "parameters, and stacking weights.",
    )
    compare_cmd.add_argument(
        "fits",
        metavar="NAME=FIT",
        nargs="+",
        help="a name and a saved fit, e.g. partial=partial.nc; two or more",
    )
    compare_cmd.add_argument(
        "--ic",
        default="loo",
        choices=["loo", "waic"],
        help="loo (default): PSIS-LOO; waic: WAIC",
    )
    compare_cmd.add_argument("--csv", metavar="FILE", help="write the table as CSV")
    compare_cmd.add_argument("--plot", metavar="FILE", help="elpd plot (.png or .svg)")
    compare_cmd.set_defaults(handler=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    """``multilevel compare``: rank saved fits by elpd; print, ``--csv``, ``--plot``."""
    for path, flag in ((args.plot, "--plot"), (args.csv, "--csv")):
        check_writable(path, flag)
    from multilevel.evaluation import compare, plot_compare

    paths = parse_named_fits(args.fits)
    fits = {name: load_scored_fit(path, f"{name}={path}") for name, path in paths.items()}
    with reported_warnings():
        table = compare(fits, ic=args.ic)
        print(format_comparison(table))
    write_table(args.csv, table)
    write_plot(args.plot, lambda path: plot_compare(table, path))
    return EXIT_OK


def parse_named_fits(items: list[str]) -> dict[str, str]:
    """The ``NAME=PATH`` arguments of ``compare``, two or more.

    Raises
    ------
    CliError
        An item is not ``NAME=PATH``, a name is given twice, or fewer than two fits.

    Examples
    --------
    >>> parse_named_fits(["partial=p.nc", "complete=c.nc"])
    {'partial': 'p.nc', 'complete': 'c.nc'}
    """
    fits: dict[str, str] = {}
    for item in items:
        name, sep, path = (part.strip() for part in item.partition("="))
        if not (sep and name and path):
            raise CliError(
                f"Cannot read the fit {item!r}; write each fit as NAME=PATH, e.g. "
                "partial=partial.nc."
            )
        if name in fits:
            raise CliError(
                f"The name {name!r} is given twice ({name}={fits[name]} and {item}); "
                "give each fit its own name."
            )
        fits[name] = path
    if len(fits) < 2:
        raise CliError(
            f"compare needs two or more fits, got {len(fits)} ({', '.join(items)}): e.g. "
            "multilevel compare partial=partial.nc complete=complete.nc."
        )
    return fits


def format_comparison(table: pd.DataFrame) -> str:
    """A ``compare`` table with a title and a line on how to read it.

    Examples
    --------
    >>> print(format_comparison(compare(fits)))  # doctest: +SKIP
    """
    from multilevel import tables

    return tables.format_table(table)
