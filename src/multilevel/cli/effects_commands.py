"""``multilevel effects``: predictions, comparisons and slopes of a saved fit, the same
numbers as ``fit.predictions`` / ``comparisons`` / ``slopes`` in Python."""

from __future__ import annotations

import argparse
import re

from multilevel.cli.io import (
    EXIT_OK,
    CliError,
    check_writable,
    load_fit,
    read_data,
    reported_warnings,
    write_json,
    write_plot,
    write_table,
)

_RANGE = re.compile(r"^\s*(-?\d+)\s*:\s*(-?\d+)\s*$")  # R's 0:9, both ends included


def add_effects_parser(commands) -> None:
    """Register ``multilevel effects`` with ``commands``."""
    effects = commands.add_parser(
        "effects",
        help="predictions, comparisons or slopes of a saved fit on the response scale",
        description="What a fit saved with `multilevel fit --save` says on the response "
        "scale: predictions on a grid (--at), the change with a predictor (--compare "
        "VARIABLE) or its derivative (--slope VARIABLE), per grid row or averaged within "
        "--by, with group effects of each row's group (--groups fitted), of a typical group "
        "(zero) or averaged over the population of groups (integrated).",
    )
    effects.add_argument("fit", metavar="FIT", help="a saved fit (netCDF)")
    effects.add_argument(
        "--data", metavar="ORIGINAL", required=True,
        help="the data the fit was made from (a saved fit keeps no covariates)",
    )  # fmt: skip
    what = effects.add_mutually_exclusive_group()
    what.add_argument("--compare", metavar="VARIABLE", help="comparisons of VARIABLE")
    what.add_argument("--slope", metavar="VARIABLE", help="slopes (derivatives) of VARIABLE")
    effects.add_argument(
        "--at", metavar="COLUMN=VALUES", action="append", default=[],
        help="grid values, repeatable: 'Days=0:9' (0 to 9), 'floor=0,1', 'arm=a,b'; other "
        "predictors at their mean or reference level. Without --at: every fitted row",
    )  # fmt: skip
    effects.add_argument(
        "--by", metavar="COLUMNS",
        help="average within groups of rows: 'all' or comma-separated columns",
    )  # fmt: skip
    effects.add_argument(
        "--groups", default="fitted", choices=["fitted", "zero", "integrated"],
        help="fitted (default): each row's group; zero: a typical group; integrated: the "
        "average over groups",
    )  # fmt: skip
    effects.add_argument("--scale", default="response", choices=["response", "link"])
    effects.add_argument(
        "--comparison", default="difference", choices=["difference", "ratio"],
        help="with --compare (default difference)",
    )  # fmt: skip
    effects.add_argument("--dpar", default=None, metavar="PARAM", help="e.g. sigma")
    effects.add_argument("--prob", type=float, default=0.9, help="interval (default 0.9)")
    effects.add_argument("--draws", type=int, default=None, help="draws per chain (default: all)")
    effects.add_argument("--seed", type=int, default=0, help="default 0")
    effects.add_argument("--csv", metavar="FILE", help="write the table as CSV")
    effects.add_argument("--json", metavar="FILE", help="write the table as JSON records")
    effects.add_argument(
        "--plot", metavar="FILE",
        help="with --at: the conditional-effects plot of the first --at column (by the "
        "second, if any)",
    )  # fmt: skip
    effects.set_defaults(handler=cmd_effects)


def cmd_effects(args: argparse.Namespace) -> int:
    """``multilevel effects``: print (and write) the effects' table."""
    for path, flag in ((args.csv, "--csv"), (args.json, "--json"), (args.plot, "--plot")):
        check_writable(path, flag)
    at = grid_of(args.at) or None
    if args.plot is not None and at is None:
        raise CliError("--plot draws the effect of the first --at column: give --at.")
    by = None if args.by is None else (True if args.by == "all" else args.by.split(","))
    fit = load_fit(args.fit)
    data = read_data(args.data)
    options = dict(at=at, by=by, groups=args.groups, scale=args.scale, dpar=args.dpar,
                   prob=args.prob, data=data, draws=args.draws, seed=args.seed)  # fmt: skip
    with reported_warnings():
        if args.compare is not None:
            effect = fit.comparisons(args.compare, comparison=args.comparison, **options)
        elif args.slope is not None:
            effect = fit.slopes(args.slope, **options)
        else:
            effect = fit.predictions(**options)
        table = effect.summary()
        print(effect)
        if args.plot is not None:
            columns = list(at)
            plot_by = columns[1] if len(columns) > 1 else None
            write_plot(args.plot, lambda path: fit.plot_effects(
                columns[0], by=plot_by, groups=args.groups if args.groups != "fitted" else "zero",
                scale=args.scale, path=path, dpar=args.dpar, prob=args.prob, data=data,
                draws=args.draws, seed=args.seed,
            ))  # fmt: skip
    write_table(args.csv, table.set_index(table.columns[0]))
    write_json(args.json, {"what": effect.what, **effect.info, "prob": effect.prob,
                           "rows": _records(table)})  # fmt: skip
    return EXIT_OK


def grid_of(specs: list[str]) -> dict:
    """``--at`` values as ``at=``: ``'Days=0:9'`` -> 0..9, ``'a=1,2'`` -> [1, 2], text
    stays text.

    >>> grid_of(["Days=0:3", "arm=a,b", "x=1.5"])
    {'Days': [0, 1, 2, 3], 'arm': ['a', 'b'], 'x': [1.5]}
    """
    out: dict = {}
    for spec in specs:
        column, sep, values = spec.partition("=")
        if not sep or not column.strip() or not values.strip():
            raise CliError(f"--at {spec!r}: write COLUMN=VALUES, e.g. 'Days=0:9' or 'arm=a,b'.")
        if match := _RANGE.match(values):
            low, high = int(match.group(1)), int(match.group(2))
            out[column.strip()] = list(
                range(low, high + 1) if low <= high else range(low, high - 1, -1)
            )
        else:
            out[column.strip()] = [_number_or_text(v.strip()) for v in values.split(",")]
    return out


def _number_or_text(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _records(table) -> list[dict]:
    """JSON-safe records: numpy scalars as Python numbers, non-finite numbers as None."""
    out = []
    for record in table.to_dict(orient="records"):
        clean = {}
        for key, value in record.items():
            if hasattr(value, "item"):
                value = value.item()
            if isinstance(value, float) and value != value:  # NaN
                value = None
            clean[str(key)] = value
        out.append(clean)
    return out
