"""Prior predictive checks: do the priors imply outcomes that look like data?

``Model.sample_prior_predictive`` draws parameters and whole data sets from the priors
(``Model.draw``), compares the simulated outcomes with the observed ones and measures how
much of the prior predictive mass lies on absurd outcomes. When more than half does, it
warns in plain words and says which prior drives it, found by attribution: each prior in
turn is replaced by a fixed moderate value (the median of the default prior of that
parameter, scaled to the data) while everything else is drawn from the priors, and the
prior whose fixing removes most of the absurd mass is named.

Plausible ranges (on the outcome scale; ``plausible=(lo, hi)`` overrides them):

* gaussian: ``[min - 2 R, max + 2 R]`` with ``R = max - min`` of the observed outcome: a
  window five times as wide as the data, centred on them. The default priors (scaled to
  the data) put well over 95% of the outcomes inside it; a prior ten times too wide puts
  most outside.
  student_t the same.
* poisson, negative_binomial: ``[0, 10 max + 10]``; counts are never negative, so only
  the upper end bites.
* lognormal, gamma: ``[min / 10, 10 max]``; beta: ``[0, 1]`` (nothing is out of range).
* bernoulli and binomial: every 0/1 outcome is in range, so the check looks at the success
  probabilities the priors imply instead: the range is ``[0.01, 0.99]`` on the probability
  scale (widened to a tenth of the observed success rate, or failure rate, when that is
  below 10%). Two shares are reported: of all implied success probabilities (row by row)
  outside it, and of simulated data sets whose overall success rate is outside it.

Examples
--------
>>> import multilevel as ml
>>> radon = ml.datasets.load("radon")
>>> model = ml.Model("log_radon ~ floor + (1 | county)", radon,
...                  priors={"Intercept": ml.Normal(0, 1000)})
>>> check = model.sample_prior_predictive(seed=1)  # doctest: +SKIP
PriorPredictiveWarning: ... The prior on 'Intercept' (Normal(0, 1000)) drives it ...
>>> check.summary  # doctest: +SKIP
>>> check.plot("prior_check.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from multilevel import priors as P
from multilevel.errors import MultilevelError
from multilevel.families import FAMILIES, success_rate
from multilevel.prior_check_measures import (
    category_shares,
    measure,
    per_draw_statistics,
    percent,
    quantile_with_inf,
)
from multilevel.prior_check_plot import plot_prior_check

__all__ = [
    "QUANTILES",
    "PriorPredictiveCheck",
    "PriorPredictiveWarning",
    "default_plausible_range",
    "prior_predictive_check",
]

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
STATISTICS = ("mean", "sd", "min", "max")
BINARY = tuple(name for name, f in FAMILIES.items() if f.binary)
THRESHOLD = 0.5  # warn when more than this share of the prior predictive is absurd
N_ATTRIBUTION = 200  # parameter sets re-simulated per candidate prior


class PriorPredictiveWarning(UserWarning):
    """The priors put most of their mass on absurd outcomes; the message names the prior."""


# ------------------------------------------------------------------------ ranges
def default_plausible_range(
    y: np.ndarray, family: str, trials: np.ndarray | None = None
) -> tuple[float, float]:
    """The default plausible range of a family's outcome, given the observed outcome.

    ``Family.plausible_range`` says what it is per family.

    Examples
    --------
    >>> default_plausible_range(np.array([1.0, 2.0, 4.0]), "gaussian")
    (-5.0, 10.0)
    """
    if family not in FAMILIES:
        raise MultilevelError(f"No plausible range is defined for the {family!r} family.")
    return FAMILIES[family].plausible_range(y, trials)


def _check_plausible(plausible, family: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in plausible)
    except (TypeError, ValueError):
        raise MultilevelError(
            f"plausible must be a pair (lo, hi) of numbers, got {plausible!r}."
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise MultilevelError(f"plausible must satisfy lo < hi (finite), got ({lo}, {hi}).")
    if family in BINARY and not (0 <= lo and hi <= 1):
        raise MultilevelError(
            f"For the {family} family the plausible range is on the probability scale "
            f"(within [0, 1]), got ({lo}, {hi})."
        )
    return lo, hi


# ---------------------------------------------------------------------- attribution
def _prior_median(prior: P.Prior) -> float:
    """The median of a scalar prior, exactly."""
    from scipy import stats  # 0.3 s: imported by a prior check, not with multilevel.Model

    loc, scale = prior.loc_scale()
    if isinstance(prior, (P.Normal, P.StudentT)):
        return loc
    if isinstance(prior, P.Exponential):
        return scale * math.log(2.0)
    if isinstance(prior, P.HalfNormal):
        return scale * float(stats.norm.ppf(0.75))
    if isinstance(prior, P.HalfCauchy):
        return scale
    if isinstance(prior, P.HalfStudentT):
        return scale * float(stats.t.ppf(0.75, prior.df))
    draws = np.asarray(prior.to_numpyro().sample(jax.random.PRNGKey(0), (20_001,)))
    return float(np.median(draws))


def _simulate(model, values: dict[str, np.ndarray], seed: int) -> tuple[dict, np.ndarray]:
    """Simulate one data set per parameter set: ``values`` maps every hyperparameter name
    to m values; group effects are drawn from their prior given the sds. The same seed
    each time: common random numbers, so rows differ by the fixed parameters alone."""
    m = len(next(iter(values.values())))
    named = model.draw(m, seed=seed, params=values, per_draw=True)
    return named, named.pop("y")


def _attribute(
    model,
    draws: dict,
    plausible: tuple[float, float],
    metric: str,
    n_sets: int,
    seed: int,
    threshold: float,
) -> pd.DataFrame:
    """Share of absurd mass with each prior in turn fixed at a moderate value.

    Rows (column ``kind``): ``baseline``, the first ``n_sets`` prior draws re-simulated
    as they are (with the same random numbers as every other row); ``single``, one row
    per prior; and, when no single prior brings the share down to ``threshold``,
    ``joint``: priors fixed together, chosen greedily (each step adds the prior that
    lowers the share most), until the share is at most ``threshold`` or stops falling."""
    spec = model.spec
    defaults = model.default_priors
    candidates = [name for name, prior in spec.priors if prior.support != P.CORRELATION]
    m = min(n_sets, len(draws["y"]))
    base = {k: np.asarray(draws[k][:m], dtype=float) for k in spec.hyper_names}
    sim_seed = seed + 1  # not the seed of the prior draws themselves
    moderate = {name: _prior_median(defaults[name]) for name in candidates}

    def share(fixed: list[str]) -> float:
        values = {**base, **{k: np.full(m, moderate[k]) for k in fixed}}
        named, y = _simulate(model, values, sim_seed)
        return measure(model, named, y, plausible)[metric]

    baseline = share([])
    prior_of, sources = spec.prior_of, dict(spec.prior_sources)
    columns = ["fixed", "kind", "prior", "source", "default prior", "fixed at", "share"]
    rows = [("(all from the priors)", "baseline", "", "", "", np.nan, baseline)]
    singles = {name: share([name]) for name in candidates}
    joint: list[str] = []
    for name, value in singles.items():
        prior, default = str(prior_of[name]), str(defaults[name])
        rows.append((name, "single", prior, sources[name], default, moderate[name], value))
    if singles and min(singles.values()) > threshold:
        pool = sorted(singles, key=singles.get)[:_GREEDY_POOL]
        chosen, current = [], baseline
        while pool and current > threshold and len(chosen) < _GREEDY_STEPS:
            trial = {name: share([*chosen, name]) for name in pool}
            best = min(trial, key=trial.get)
            if current - trial[best] < 0.01:
                break
            chosen.append(best)
            pool.remove(best)
            current = trial[best]
        if len(chosen) > 1:
            joint = chosen
            rows.append((" & ".join(chosen), "joint", "", "", "", np.nan, current))
    table = pd.DataFrame(rows, columns=columns)
    table["reduction"] = baseline - table["share"]
    table = table.set_index("fixed")
    table.attrs["joint"] = joint
    return table


_GREEDY_POOL = 8  # priors tried in the joint search (those that help most on their own)
_GREEDY_STEPS = 4


def _times(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _diagnosis(prior: P.Prior, default: P.Prior) -> str:
    """Why a prior is implausible next to its default: too wide, or centred elsewhere."""
    if prior.support == P.REAL:
        (loc, scale), (d_loc, d_scale) = prior.loc_scale(), default.loc_scale()
        if scale > 3 * d_scale:
            return (
                f"It is {_times(scale / d_scale)} times as wide as the default scaled to the data."
            )
        if abs(loc - d_loc) > 3 * d_scale:
            return "It is centred far from where the data put this parameter."
        return ""
    ratio = _prior_median(prior) / _prior_median(default)
    if ratio > 5:
        return f"Its median is {_times(ratio)} times that of the default scaled to the data."
    if ratio < 0.2:
        return f"Its median is {_times(1 / ratio)} times smaller than that of the default."
    return ""


def _advice(model, name: str) -> str:
    spec = model.spec
    prior = spec.prior_of[name]
    default = model.default_priors[name]
    if prior != default:
        words = _diagnosis(prior, default)
        return (
            (words + " " if words else "")
            + "Set it from what you know about the outcome, e.g. "
            + f"priors={{'{name}': ml.{default}}} (the default, scaled to the data)."
        )
    return (
        "It is the default prior, scaled to the data; if that is still too wide for your "
        "outcome, set a narrower one from what you know."
    )


def _named_prior(table: pd.DataFrame, name: str) -> str:
    row = table.loc[name]
    source = row["source"]
    return f"{row['prior']}, {source}" if source.startswith("set by class") else row["prior"]


def _attribution_words(
    model, table: pd.DataFrame, share: float, threshold: float, what: str
) -> str:
    """Plain words on which prior drives the absurd mass (``what`` names the share)."""
    singles = table[table["kind"] == "single"].sort_values("share")
    if not len(singles):
        return "The model has no prior to attribute it to."
    best = singles.iloc[0]
    name = str(best.name)
    if best["share"] <= threshold:
        text = (
            f"The prior on '{name}' ({_named_prior(table, name)}) drives it: with {name} "
            f"fixed at {best['fixed at']:.4g} (a moderate value: the median of its default "
            f"prior {best['default prior']}) only {percent(best['share'])} of {what} are out "
            f"of range (instead of {percent(share)}). " + _advice(model, name)
        )
        others = singles.iloc[1:][singles.iloc[1:]["share"] <= threshold]
        if len(others):
            text += " Fixing " + ", ".join(
                f"'{o}' instead also brings it to {percent(s)}" for o, s in others["share"].items()
            )
            text += "."
        return text
    helped = (
        f"fixing any one prior at a moderate value leaves at least {percent(best['share'])} of "
        f"{what} out of range ('{name}' helps most)."
    )
    joint = table[table["kind"] == "joint"]
    if len(joint):
        names = table.attrs["joint"]
        listed = ", ".join(f"'{n}' ({_named_prior(table, n)})" for n in names[:-1])
        listed += f" and '{names[-1]}' ({_named_prior(table, names[-1])})"
        value = joint["share"].iloc[0]
        if value <= threshold:
            return (
                f"No single prior explains it: {helped} Together the priors on {listed} "
                f"do: with {'both' if len(names) == 2 else 'all of them'} fixed at moderate "
                "values (the medians of their "
                f"default priors) only {percent(value)} are out of range. Set each from what "
                "you know about the outcome (their defaults are scaled to the data)."
            )
        return (
            f"No prior explains it: {helped} Fixing {listed} together still leaves "
            f"{percent(value)}. Check the priors together with the scale of the predictors "
            "and of the outcome."
        )
    return (
        f"No prior explains it: {helped} Check the priors together with the scale of the "
        "predictors and of the outcome."
    )


# ---------------------------------------------------------------------------- check
class PriorPredictiveCheck:
    """Outcomes implied by the priors, compared with the observed outcomes.

    Attributes
    ----------
    draws : dict of str to ndarray
        Prior draws of every parameter (as ``Model.draw``) and ``"y"``, shape (n, rows):
        one simulated data set per draw. Poisson counts whose rate overflows (> 2**31)
        are ``inf``.
    observed : ndarray
        The observed outcome (rows used by the model).
    plausible : (float, float)
        The plausible range used (outcome scale; probability scale for binary families).
    plausible_source : {"default", "given"}
    share_outside : float
        gaussian, poisson: share of all simulated outcomes outside ``plausible``;
        bernoulli, binomial: share of all implied success probabilities outside it.
    share_extreme_rates : float or None
        bernoulli, binomial: share of simulated data sets whose overall success rate is
        outside ``plausible``.
    summary : pandas.DataFrame
        Rows ``q1%`` ... ``q99%``: quantiles of all simulated outcomes pooled over draws
        (column ``simulated``) and of the observed outcomes (``observed``). Rows ``mean``,
        ``sd``, ``min``, ``max``: the statistic of each simulated data set, summarised by
        its median across draws (``simulated``) and 90% range (``5%``, ``95%``), next to
        the observed statistic. Binomial outcomes are proportions ``y / trials``;
        bernoulli has a ``success rate`` row instead; both binary families add ``p q1%``
        ... rows: quantiles of the implied success probabilities.
    warnings : list of str
        Plain-words problems, each naming the prior that drives it.
    attribution : pandas.DataFrame or None
        Share of absurd mass with each prior fixed at a moderate value (computed when a
        warning is raised, or by ``attribute()``).
    """

    def __init__(
        self,
        model,
        draws: dict,
        seed: int,
        plausible: tuple[float, float] | None = None,
        threshold: float = THRESHOLD,
        n_attribution: int = N_ATTRIBUTION,
    ):
        self.model = model
        self.spec = model.spec
        self.family = model.spec.family
        self.response = model.spec.response
        self.seed = int(seed)
        self.n = len(draws["y"])
        self.threshold = float(threshold)
        self.n_attribution = int(n_attribution)
        design = model.design
        self.observed = np.asarray(design.y, dtype=float)
        self.trials = None if design.trials is None else np.asarray(design.trials, dtype=float)
        if self.observed.ndim == 2:  # a multinomial's counts: read as shares of the totals
            self.observed, self.trials = category_shares(self.observed, self.trials), None
        if plausible is None:
            self.plausible = default_plausible_range(self.observed, self.family, self.trials)
            self.plausible_source = "default"
        else:
            self.plausible = _check_plausible(plausible, self.family)
            self.plausible_source = "given"
        measured = measure(model, draws, draws["y"], self.plausible)
        # outcomes of overflowing rates are marked inf by measure(), not simulated
        # (and a multinomial's as shares, like its observed counts)
        changed = "overflow" in measured or np.ndim(draws["y"]) == 3
        self.draws = {**draws, "y": measured["y"] if changed else draws["y"]}
        self._measured = measured
        self._overflow = measured.get("overflow", 0.0)
        if self.family in BINARY:
            self.share_outside = measured["probabilities"]
            self.share_extreme_rates: float | None = measured["rates"]
        else:
            self.share_outside = measured["outcomes"]
            self.share_extreme_rates = None
        self.summary = self._summary()
        self.attribution: pd.DataFrame | None = None
        self.warnings: list[str] = []
        metric = self._absurd_metric()
        if metric is not None:
            self.attribute(metric)
            self.warnings.append(self._message(metric))

    # ------------------------------------------------------------------ numbers
    def _summary(self) -> pd.DataFrame:
        m = self._measured
        cols = ["observed", "simulated", "5%", "95%"]
        rows: dict[str, list[float]] = {}
        if self.family == "bernoulli":
            rate = m["rate"]
            obs_rate = success_rate(self.observed, None)
            rows["success rate"] = [obs_rate, *quantile_with_inf(rate, [0.5, 0.05, 0.95])]
        else:
            sim, obs = m["y"], self.observed
            if self.trials is not None:  # successes out of trials: as shares
                sim, obs = sim / self.trials, obs / self.trials
            pooled = quantile_with_inf(sim.ravel(), QUANTILES)
            observed = quantile_with_inf(obs, QUANTILES)
            for q, a, b in zip(QUANTILES, observed, pooled):
                rows[f"q{100 * q:g}%"] = [a, b, np.nan, np.nan]
            per_draw, obs_stats = per_draw_statistics(sim), per_draw_statistics(obs[None])
            for stat in STATISTICS:
                rows[stat] = [
                    float(obs_stats[stat][0]),
                    *quantile_with_inf(per_draw[stat], [0.5, 0.05, 0.95]),
                ]
            if self.trials is not None:
                obs_rate = success_rate(self.observed, self.trials)
                rows["success rate"] = [obs_rate, *quantile_with_inf(m["rate"], [0.5, 0.05, 0.95])]
        if self.family in BINARY:
            for q, value in zip(QUANTILES, quantile_with_inf(m["p"].ravel(), QUANTILES)):
                rows[f"p q{100 * q:g}%"] = [np.nan, value, np.nan, np.nan]
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
        frame.index.name = "statistic"
        return frame

    def _absurd_metric(self) -> str | None:
        if self.family in BINARY:
            shares = {"probabilities": self.share_outside, "rates": self.share_extreme_rates}
            metric = max(shares, key=shares.get)
            return metric if shares[metric] > self.threshold else None
        return "outcomes" if self.share_outside > self.threshold else None

    def attribute(self, metric: str | None = None) -> pd.DataFrame:
        """Which prior drives the absurd mass: re-simulate ``n_attribution`` of the prior
        draws with each prior in turn fixed at a moderate value (the median of that
        parameter's default prior) and everything else as drawn. Returns (and keeps as
        ``attribution``) a table of the share of absurd mass in each case."""
        metric = (
            metric
            or self._absurd_metric()
            or ("probabilities" if self.family in BINARY else "outcomes")
        )
        self.attribution = _attribute(
            self.model,
            self.draws,
            self.plausible,
            metric,
            self.n_attribution,
            self.seed,
            self.threshold,
        )
        self.attribution.attrs["metric"] = metric
        return self.attribution

    def _range_words(self) -> str:
        lo, hi = self.plausible
        if self.plausible_source == "given":
            return f"the plausible range [{lo:.4g}, {hi:.4g}] you gave"
        how = FAMILIES[self.family].plausible_rule
        return f"the plausible range [{lo:.4g}, {hi:.4g}] ({how})"

    def _message(self, metric: str) -> str:
        lo, hi = self.plausible
        if metric == "outcomes":
            what = "simulated outcomes"
            head = (
                f"The priors put most of their mass on absurd outcomes: "
                f"{percent(self.share_outside)} of the values of {self.response} simulated "
                f"from the priors lie outside {self._range_words()}; the observed values "
                f"span [{self.observed.min():.4g}, {self.observed.max():.4g}]."
            )
            if self._overflow > 0:
                head += (
                    f" {percent(self._overflow)} of the simulated means (rates) exceed "
                    "2**31, too large to simulate at all."
                )
            share = self.share_outside
        else:
            obs_rate = success_rate(self.observed, self.trials)
            rates = (
                f"{percent(self.share_extreme_rates)} of simulated data sets have an overall "
                f"success rate outside [{lo:.4g}, {hi:.4g}] (observed: {obs_rate:.3g})"
            )
            probs = (
                f"{percent(self.share_outside)} of the success probabilities implied by the "
                f"priors are below {lo:.4g} or above {hi:.4g}"
            )
            first, second = (probs, rates) if metric == "probabilities" else (rates, probs)
            other = self.share_extreme_rates if metric == "probabilities" else self.share_outside
            joiner = "; " if other > self.threshold else ", although only "
            head = (
                "The priors put most of their mass on extreme probabilities, i.e. on an "
                f"outcome that is almost certain: {first}{joiner}{second}."
            )
            what = "success probabilities" if metric == "probabilities" else "simulated data sets"
            share = self.share_outside if metric == "probabilities" else self.share_extreme_rates
        words = _attribution_words(self.model, self.attribution, share, self.threshold, what)
        return head + " " + words

    # ---------------------------------------------------------------- display
    def __repr__(self) -> str:
        lo, hi = self.plausible
        lines = [
            f"Prior predictive check of {self.response} ({self.family}; {self.n} draws, "
            f"seed {self.seed})",
            "",
            self.summary.to_string(float_format=lambda x: f"{x:.4g}"),
            "",
        ]
        if self.family in BINARY:
            lines.append(
                f"Success probabilities outside [{lo:.4g}, {hi:.4g}]: "
                f"{percent(self.share_outside)}; data sets with a success rate outside it: "
                f"{percent(self.share_extreme_rates)}"
            )
        else:
            lines.append(
                f"Simulated outcomes outside the plausible range [{lo:.4g}, {hi:.4g}] "
                f"({self.plausible_source}): {percent(self.share_outside)}"
            )
        if self.warnings:
            lines += ["", "Warnings:"] + [f"- {w}" for w in self.warnings]
        else:
            lines.append("No warnings: the priors imply outcomes on the scale of the data.")
        return "\n".join(lines)

    def plot(self, path: str | Path | None = None, n_sets: int = 50):
        """Simulated data sets next to the observed data; saved to ``path`` if given
        (PNG, SVG, PDF by suffix). Returns a matplotlib Figure (no pyplot state). What
        each panel shows: ``multilevel.prior_check_plot``."""
        return plot_prior_check(self, path, n_sets)


def prior_predictive_check(
    model,
    n: int = 500,
    seed: int = 0,
    plausible: tuple[float, float] | None = None,
    *,
    threshold: float = THRESHOLD,
    n_attribution: int = N_ATTRIBUTION,
    warn: bool = True,
) -> PriorPredictiveCheck:
    """Draw ``n`` parameter sets and data sets from the priors and check them.

    Parameters
    ----------
    model : Model
    n : int
        Number of prior draws (each a whole simulated data set).
    seed : int
        The same seed gives identical draws.
    plausible : (lo, hi), optional
        Plausible range of the outcome (of the success probability for bernoulli and
        binomial). Defaults: see ``default_plausible_range``.
    threshold : float
        Warn when more than this share of the prior predictive mass is out of range.
    n_attribution : int
        Prior draws re-simulated per prior when attributing a problem.
    warn : bool
        Also issue each problem as a ``PriorPredictiveWarning`` (always kept in
        ``check.warnings``).

    Examples
    --------
    >>> check = prior_predictive_check(model, n=500, seed=1)  # doctest: +SKIP
    >>> check.share_outside  # doctest: +SKIP
    0.004
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise MultilevelError(f"n must be a positive whole number, got {n!r}.")
    if not 0 < threshold < 1:
        raise MultilevelError(f"threshold must be between 0 and 1, got {threshold}.")
    if plausible is not None:
        plausible = _check_plausible(plausible, model.spec.family)
    draws = model.draw(int(n), int(seed))
    check = PriorPredictiveCheck(model, draws, seed, plausible, threshold, n_attribution)
    if warn:
        for message in check.warnings:
            warnings.warn(message, PriorPredictiveWarning, stacklevel=3)
    return check
