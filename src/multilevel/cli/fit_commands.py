"""The commands on saved fits: ``predict``, ``loo``, ``r2``, ``hypothesis`` and
``compare``; their parsers and what they print and write."""

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


# --------------------------------------------------------------------------- r2


def add_r2_parser(commands) -> None:
    """Register ``multilevel r2`` with ``commands``."""
    r2_cmd = commands.add_parser(
        "r2",
        help="Bayesian R² (or LOO-adjusted R²) of a saved fit",
        description="Bayesian R² of a fit saved with `multilevel fit --save` (or fit.save), "
        "one per posterior draw: var(mean) / (var(mean) + var(y - mean)) over the fitted "
        "rows (Gelman et al. 2019, as brms' bayes_R2); --loo: the LOO-adjusted R² (brms' "
        "loo_R2). Prints estimate (mean), median, sd, q5 and q95.",
    )
    r2_cmd.add_argument("fit", metavar="FIT", help="a saved fit (netCDF)")
    r2_cmd.add_argument(
        "--data",
        metavar="ORIGINAL",
        required=True,
        help="the data the fit was made from (a saved fit keeps no covariates)",
    )
    r2_cmd.add_argument(
        "--groups",
        default="fitted",
        choices=["fitted", "zero"],
        help="fitted (default): each row's own group effects; zero: the population part alone",
    )
    r2_cmd.add_argument("--loo", action="store_true", help="the LOO-adjusted R²")
    r2_cmd.add_argument("--seed", type=int, default=0, help="--loo's bootstrap (default 0)")
    r2_cmd.add_argument("--json", metavar="FILE", help="write the numbers as JSON")
    r2_cmd.set_defaults(handler=cmd_r2)


def cmd_r2(args: argparse.Namespace) -> int:
    """``multilevel r2``: print (and ``--json``) the R² of a saved fit."""
    check_writable(args.json, "--json")
    fit = load_fit(args.fit)
    data = read_data(args.data)
    with reported_warnings():
        if args.loo:
            result = fit.loo_r2(groups=args.groups, seed=args.seed, data=data)
        else:
            result = fit.r2(groups=args.groups, data=data)
        print(result)
    row = result.summary().iloc[0]
    report = {"method": result.method, "groups": result.groups, "n_draws": len(result.draws)}
    report.update({k: finite(v) for k, v in row.items()})
    report["note"] = result.note
    write_json(args.json, report)
    return EXIT_OK


# --------------------------------------------------------------------------- hypothesis


def add_hypothesis_parser(commands) -> None:
    """Register ``multilevel hypothesis`` with ``commands``."""
    hyp = commands.add_parser(
        "hypothesis",
        help="test hypotheses on a saved fit's parameters",
        description='Test hypotheses such as "floor < 0", "a - b = 0" or '
        "\"`sd(Intercept|county)` > 0.2\" on a saved fit's posterior (as brms' "
        "hypothesis): per hypothesis the estimate and sd of left - right, an interval "
        "(one-sided for < and >), the posterior probability and the evidence ratio. A "
        "point hypothesis (=) needs the model's prior for its Bayes factor, which a saved "
        "fit lacks: its evidence ratio is reported as missing. Put -- before a hypothesis "
        "that starts with a minus sign.",
    )
    hyp.add_argument("fit", metavar="FIT", help="a saved fit (netCDF)")
    hyp.add_argument("hypotheses", metavar="HYPOTHESIS", nargs="+", help='e.g. "floor < 0"')
    hyp.add_argument("--prob", type=float, default=0.9, help="interval probability (0.9)")
    hyp.add_argument("--json", metavar="FILE", help="write the numbers as JSON")
    hyp.set_defaults(handler=cmd_hypothesis)


def cmd_hypothesis(args: argparse.Namespace) -> int:
    """``multilevel hypothesis``: print (and ``--json``) the tests on a saved fit."""
    check_writable(args.json, "--json")
    fit = load_fit(args.fit)
    with reported_warnings():
        result = fit.hypothesis(*args.hypotheses, prob=args.prob)
        print(result)
    rows = [
        {k: (v if isinstance(v, str) else finite(v)) for k, v in row.items()}
        for row in result.table.to_dict(orient="records")
    ]
    # JSON has no infinity: null where a bound or an evidence ratio is inf (the notes say why)
    write_json(args.json, {"prob": args.prob, "hypotheses": rows, "notes": result.notes})
    return EXIT_OK


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
