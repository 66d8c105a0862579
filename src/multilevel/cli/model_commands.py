"""The commands that build a model from data: ``fit``, ``describe``, and ``datasets``
(the built-in data sets a model can be built from); their parsers and what they print.
"""

from __future__ import annotations

import argparse
import sys

from multilevel.cli.io import (
    EXIT_NOT_CONVERGED,
    EXIT_OK,
    check_writable,
    finite,
    reported_warnings,
    write_json,
    write_output,
)
from multilevel.cli.model_options import build_model, model_parser
from multilevel.cli.sampler_options import sampler_options, sampler_parser

# --------------------------------------------------------------------------- fit


def add_fit_parser(commands) -> None:
    """Register ``multilevel fit`` with ``commands`` (``parser.add_subparsers()``)."""
    fit = commands.add_parser(
        "fit",
        parents=[model_parser(), sampler_parser()],
        help="fit a model and print its summary",
        description="Fit a model with NUTS and print an lme4-like summary. Exit status: "
        "0 done; 2 bad input (nothing fitted); 3 the fit did not converge (its summary "
        "starts with why; --json and --save are still written); 130 interrupted.",
    )
    fit.add_argument("--json", metavar="FILE", help="write estimates and diagnostics as JSON")
    fit.add_argument(
        "--allow-unconverged",
        action="store_true",
        help="exit 0 even when the fit did not converge (default: exit 3)",
    )
    fit.add_argument(
        "--save", metavar="FILE", help="save the fit (netCDF); read it with multilevel.load"
    )
    fit.set_defaults(handler=cmd_fit)


def cmd_fit(args: argparse.Namespace) -> int:
    """``multilevel fit``: fit, print the summary, write ``--json`` and ``--save``.

    Returns
    -------
    int
        ``EXIT_OK``, or ``EXIT_NOT_CONVERGED`` (outputs still written) unless
        ``--allow-unconverged``.
    """
    check_writable(args.json, "--json")
    check_writable(args.save, "--save")
    with reported_warnings():
        model = build_model(args)
        fit = model.fit(progress=not args.quiet, **sampler_options(args))
        print(fit)
    write_json(args.json, fit_report(fit))
    if args.save is not None:
        write_output(args.save, "--save", fit.save)
    if not fit.diagnostics.converged and not args.allow_unconverged:
        # outputs are written (to look into the failure); the status tells scripts
        print(
            f"not converged: exit status {EXIT_NOT_CONVERGED} (the verdict is the first "
            "lines above); --allow-unconverged exits 0.",
            file=sys.stderr,
        )
        return EXIT_NOT_CONVERGED
    return EXIT_OK


def fit_report(fit) -> dict:
    """The ``fit --json`` document: parameters, diagnostics, timing and the model (and,
    for ``--method laplace``, ``laplace``: the approximation's accuracy report).

    Parameters
    ----------
    fit : multilevel.Fit

    Returns
    -------
    dict
        JSON-safe (non-finite numbers are None).

    Examples
    --------
    >>> fit_report(fit)["diagnostics"]["converged"]  # doctest: +SKIP
    True
    """
    table = fit.summary()
    d = fit.diagnostics
    return {
        "parameters": {
            str(name): {col: finite(row[col]) for col in table.columns}
            for name, row in table.iterrows()
        },
        "diagnostics": {
            "converged": bool(d.converged),
            "divergences": int(d.divergences),
            "max_r_hat": finite(d.max_r_hat),
            "min_ess_bulk": finite(d.min_ess_bulk),
        },
        "timing": {k: finite(fit.timing[k]) for k in ("compile_s", "sampling_s", "total_s")},
        "model": {
            "formula": fit.spec.full_formula,  # with every parameter's formula
            "family": fit.spec.family,
            "link": fit.spec.link,
            "method": fit.info["method"],
        },
        # method="laplace": the approximation's accuracy (k-hat) and Newton's convergence
        **({"laplace": _laplace_report(fit.info["laplace"])} if "laplace" in fit.info else {}),
    }


def _laplace_report(report: dict) -> dict:
    """``fit.info["laplace"]`` for JSON: floats that are not finite become null."""
    return {k: finite(v) if isinstance(v, float) else v for k, v in report.items()}


# --------------------------------------------------------------------------- describe


def add_describe_parser(commands) -> None:
    """Register ``multilevel describe`` with ``commands``."""
    describe = commands.add_parser(
        "describe",
        parents=[model_parser()],
        help="show every parameter and its prior, without fitting",
        description="Show every parameter of a model with its prior, without fitting.",
    )
    describe.set_defaults(handler=cmd_describe)


def cmd_describe(args: argparse.Namespace) -> int:
    """``multilevel describe``: print every parameter and its prior, and missing data."""
    with reported_warnings():
        model = build_model(args)
        print(model.spec.describe())
        if model.missing.counts:
            print(f"Missing data: {model.missing}")
    return EXIT_OK


# --------------------------------------------------------------------------- datasets


def add_datasets_parser(commands) -> None:
    """Register ``multilevel datasets`` with ``commands``."""
    data_sets = commands.add_parser(
        "datasets",
        help="list the built-in data sets, or describe one",
        description="List the built-in data sets, or describe one.",
    )
    data_sets.add_argument("name", metavar="NAME", nargs="?", help="data set to describe")
    data_sets.set_defaults(handler=cmd_datasets)


def cmd_datasets(args: argparse.Namespace) -> int:
    """``multilevel datasets [NAME]``: one line per built-in data set, or one in full."""
    from multilevel import datasets

    if args.name is not None:
        print(datasets.describe(args.name))
        return EXIT_OK
    names = datasets.names()
    width = max(map(len, names))
    for name in names:
        first = datasets.describe(name).splitlines()[0]
        # The first line repeats the name ("radon: 919 rows, 5 columns."); show it once.
        first = first.removeprefix(f"{name}: ")
        print(f"{name:<{width}}  {first}")
    print("\nMore about one: multilevel datasets NAME")
    return EXIT_OK
