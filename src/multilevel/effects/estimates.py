"""Predictions, comparisons and slopes on the response (or link) scale, per row of a grid
or averaged within groups of rows, with group effects conditioned on or integrated out.

* ``groups="fitted"``: each row's own group effects (a level the fit never saw draws
  new effects from the population, as ``predict``);
* ``groups="zero"``: a typical group, every effect 0 (brms' ``re_formula = NA``);
* ``groups="integrated"``: the average over the population of groups, the effects
  integrated out draw by draw over their fitted distribution (``population_average``).
  With the identity link it equals ``"zero"``; with others it does not (a logit's
  population-averaged slope is attenuated).

Every estimate is computed per posterior draw, so comparisons are differences (or
ratios) of predictions draw by draw and averages over rows (``by=``) are averages of
each draw's values: the summary is of the draws of the final quantity. Rows are
processed in batches, so averaging over a million rows holds one batch at a time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from multilevel.effects.grid import effect_rows, levels_of, numeric, typical_value
from multilevel.errors import MultilevelError
from multilevel.options import check_seed
from multilevel.prediction import predict
from multilevel.progress import progress_bar
from multilevel.tables import check_prob, format_table, interval_columns, table

GROUPS = {"fitted": "sample", "zero": "population", "integrated": "integrated"}
SCALES = {"response": "mean", "link": "link"}
# draws x rows x categories per batch: 40 MB per float64 array; a prediction holds a few
VALUES_PER_BATCH = 5_000_000


class Effects:
    """Draws of an effect per row of ``table`` and their summary.

    ``draws``: (draws, rows) array, chains stacked (a category axis last for the
    probabilities of an ordinal or categorical response); ``keys``: a DataFrame that
    says what each row is (grid values, ``by`` groups, the contrast);
    ``summary(prob)``: ``keys`` with estimate (posterior mean), median, sd and the
    equal-tailed interval of probability ``prob`` (default ``self.prob``)."""

    def __init__(self, what: str, keys: pd.DataFrame, draws: np.ndarray, prob: float, info):
        self.what, self.keys, self.draws, self.prob, self.info = what, keys, draws, prob, info

    def summary(self, prob: float | None = None) -> pd.DataFrame:
        prob = self.prob if prob is None else check_prob(prob)
        draws = self.draws
        keys = self.keys
        if draws.ndim == 3:  # per category: long format, a row per (row, category)
            categories = self.info["categories"]
            keys = keys.loc[keys.index.repeat(len(categories))].reset_index(drop=True)
            keys.insert(len(keys.columns), "category", categories * len(self.keys))
            draws = draws.reshape(draws.shape[0], -1)
        out = keys.copy()
        out["estimate"] = draws.mean(axis=0)
        out["median"] = np.median(draws, axis=0)
        out["sd"] = draws.std(axis=0, ddof=1)
        bounds = interval_columns(prob)
        for name, quantile in bounds.items():
            out[name] = np.quantile(draws, quantile, axis=0)
        estimates = ["estimate", "median", *bounds]
        return table(out, precision={c: "sd" for c in [*estimates, "sd"]})

    @property
    def table(self) -> pd.DataFrame:
        return self.summary()

    def __repr__(self) -> str:
        low, high = interval_columns(self.prob)
        header = (
            f"{self.what} ({self.info['scale']} scale, groups={self.info['groups']!r}; "
            f"estimate = posterior mean; {self.prob:.0%} interval: {low} to {high})"
        )
        if self.info.get("integration_error"):
            header += (
                f"\nGroups integrated out by Monte Carlo: its se is at most "
                f"{self.info['integration_error']:.2g} per draw and row."
            )
        return header + "\n" + format_table(self.summary(), index=False)


def predictions(fit, at=None, by=None, groups="fitted", scale="response", dpar=None,
                prob=0.9, data=None, draws=None, seed=0, progress=True) -> Effects:  # fmt: skip
    """Predictions per row of ``at`` (or averaged within ``by``); see the module doc."""
    setting = _Setting(fit, groups, scale, dpar, prob, data, draws, seed, progress)
    rows = setting.rows(at)
    keys, draws_ = setting.reduce(rows, by, lambda frame: setting.values(frame))
    return setting.result("Predictions", keys, draws_)


def comparisons(fit, variable: str, at=None, by=None, groups="fitted", scale="response",
                contrast=None, comparison="difference", dpar=None, prob=0.9, data=None,
                draws=None, seed=0, progress=True) -> Effects:  # fmt: skip
    """How the prediction changes when ``variable`` changes, per row of ``at`` (or
    averaged within ``by``), draw by draw.

    ``contrast``: for a numeric variable the change to make, default +1 (``x + 1``
    against ``x``), a number ``d`` (``x + d``), ``"sd"`` (one sd of the fitted values) or
    a pair ``(a, b)`` (``x = b`` against ``x = a`` in every row); for a categorical one
    each level against the reference (default) or a pair ``(a, b)``. ``comparison``:
    ``"difference"`` (high - low), ``"ratio"`` (high / low) or a function of (high, low)
    arrays."""
    setting = _Setting(fit, groups, scale, dpar, prob, data, draws, seed, progress)
    rows = setting.rows(at)
    function = _comparison_function(comparison)
    pairs = _contrast_pairs(setting.fitted, rows, variable, contrast)
    keys, out = [], []
    for (high_label, low_label), low, high, sets_both in pairs:

        def compared(frame, low=low, high=high):
            return function(setting.values(high(frame)), setting.values(low(frame)))

        part_keys, part = setting.reduce(rows, by, compared)
        if sets_both and variable in part_keys.columns:  # its value in the rows is not used
            part_keys = part_keys.drop(columns=variable)
        label = _contrast_label(comparison, high_label, low_label)
        keys.append(part_keys.assign(term=variable, contrast=label))
        out.append(part)
    keys = pd.concat(keys, ignore_index=True)
    keys = keys[["term", "contrast", *[c for c in keys.columns if c not in ("term", "contrast")]]]
    return setting.result("Comparisons", keys, np.concatenate(out, axis=1))


def slopes(fit, variable: str, at=None, by=None, groups="fitted", scale="response",
           slope="derivative", dpar=None, prob=0.9, data=None, draws=None,
           seed=0, progress=True) -> Effects:  # fmt: skip
    """The derivative of the prediction with respect to the numeric ``variable``, per
    row of ``at`` (or averaged within ``by``), draw by draw: a central difference over
    ``h`` = 1e-4 sd(x) (the prediction is smooth in x: the error is O(h^2), below 1e-7 of
    the slope). ``slope="elasticity"``: the derivative times x / prediction (the %
    change of the prediction per % change of x)."""
    if slope not in ("derivative", "elasticity"):
        raise MultilevelError(f"slope must be 'derivative' or 'elasticity', not {slope!r}.")
    setting = _Setting(fit, groups, scale, dpar, prob, data, draws, seed, progress)
    rows = setting.rows(at)
    column = setting.fitted[variable] if variable in setting.fitted.columns else None
    if column is None or not numeric(column):
        raise MultilevelError(
            f"slopes() needs a numeric predictor; {variable!r} is "
            + ("not a column of the fitted data" if column is None else "categorical")
            + f". For a categorical one use comparisons({variable!r})."
        )
    h = 1e-4 * (float(column.std()) or 1.0)

    def shifted(frame, by):
        return frame.assign(**{variable: frame[variable].astype(float) + by})

    def derivative(frame):
        high = setting.values(shifted(frame, h / 2))
        low = setting.values(shifted(frame, -h / 2))
        value = (high - low) / h
        if slope == "elasticity":
            x = frame[variable].to_numpy(dtype=float)
            value = value * x / setting.values(frame)
        return value

    keys, out = setting.reduce(rows, by, derivative)
    keys = keys.assign(term=variable)
    keys = keys[["term", *[c for c in keys.columns if c != "term"]]]
    return setting.result("Slopes" if slope == "derivative" else "Elasticities", keys, out)


class _Setting:
    """What every effect shares: the fit, its fitted rows, and how to predict."""

    def __init__(self, fit, groups, scale, dpar, prob, data, draws, seed, progress=True):
        if groups not in GROUPS:
            raise MultilevelError(
                f"groups must be one of {', '.join(map(repr, GROUPS))}, not {groups!r}."
            )
        if scale not in SCALES:
            raise MultilevelError(f"scale must be 'response' or 'link', not {scale!r}.")
        check_seed(seed)
        self.fit, self.groups, self.scale, self.dpar = fit, groups, scale, dpar
        self.prob, self.data, self.draws, self.seed = check_prob(prob), data, draws, seed
        self.progress = progress  # a bar on a terminal when rows take several batches
        self.design, self.fitted = fit.rows(data, what="Effects")
        self.categories = None
        self.integration_error = 0.0  # the largest Monte Carlo se of groups="integrated"

    def rows(self, at) -> pd.DataFrame:
        return effect_rows(self.fit.spec, self.fitted, at, fill_groups=self.groups != "fitted")

    def values(self, frame: pd.DataFrame) -> np.ndarray:
        """(draws, rows[, categories]) predictions of ``frame``, chains stacked."""
        prediction = predict(
            self.fit, frame, kind=SCALES[self.scale], groups=GROUPS[self.groups],
            seed=self.seed, draws=self.draws, data=self.data, dpar=self.dpar,
        )  # fmt: skip
        error = prediction.draws.attrs.get("integration_error", 0.0)
        self.integration_error = max(self.integration_error, error)
        values = prediction.draws[prediction.response]
        if "category" in values.dims:
            self.categories = [str(c) for c in values["category"].values]
        array = values.values
        return array.reshape(-1, *array.shape[2:]).astype(float)

    def reduce(self, rows: pd.DataFrame, by, compute: Callable) -> tuple[pd.DataFrame, np.ndarray]:
        """``compute`` on batches of ``rows``, kept per row (``by`` None) or averaged
        within groups of rows (``by``: True for all, a column or a list of columns)."""
        by = _by_columns(by, rows)
        if by is None:
            return rows.copy(), self._batched(rows, compute, None)
        codes, keys = _group_codes(rows, by)
        return keys, self._batched(rows, compute, (codes, len(keys)))

    def _batched(self, rows, compute, grouping):
        categories = len(self.fit.spec.response_levels or ()) or 1  # a category axis
        size = max(1, VALUES_PER_BATCH // (self._n_draws() * categories))
        sums, out = None, []
        starts = range(0, len(rows), size)
        show = self.progress and len(starts) > 1
        with progress_bar(total=len(rows), desc="Effects", unit="row", show=show) as bar:
            for start in starts:
                part = compute(rows.iloc[start : start + size])
                bar.update(min(size, len(rows) - start))
                if grouping is None:
                    out.append(part)
                    continue
                codes = grouping[0][start : start + size]
                totals = np.zeros((part.shape[0], grouping[1], *part.shape[2:]))
                np.add.at(totals, (slice(None), codes), part)
                sums = totals if sums is None else sums + totals
        if grouping is None:
            return np.concatenate(out, axis=1)
        counts = np.bincount(grouping[0], minlength=grouping[1]).astype(float)
        return sums / counts.reshape(1, -1, *([1] * (sums.ndim - 2)))

    def _n_draws(self) -> int:
        posterior = self.fit.idata.posterior
        per_chain = posterior.sizes["draw"] if self.draws is None else self.draws
        return posterior.sizes["chain"] * min(per_chain, posterior.sizes["draw"])

    def result(self, what: str, keys: pd.DataFrame, draws: np.ndarray) -> Effects:
        info = {"scale": self.scale, "groups": self.groups, "dpar": self.dpar,
                "categories": self.categories,
                "integration_error": self.integration_error}  # fmt: skip
        return Effects(what, keys.reset_index(drop=True), draws, self.prob, info)


def _contrast_pairs(fitted: pd.DataFrame, rows: pd.DataFrame, variable: str, contrast):
    """(label, low rows, high rows) per contrast of ``variable``."""
    if variable not in fitted.columns:
        raise MultilevelError(f"{variable!r} is not a column of the fitted data.")
    column = fitted[variable]

    def setting(value):
        def apply(frame):
            if isinstance(column.dtype, pd.CategoricalDtype):
                value_ = pd.Categorical([value] * len(frame), categories=column.cat.categories)
                return frame.assign(**{variable: value_})
            return frame.assign(**{variable: value})

        return apply

    if isinstance(contrast, tuple) and len(contrast) == 2:
        low, high = contrast
        return [((high, low), setting(low), setting(high), True)]
    if not numeric(column):
        if contrast is not None:
            raise MultilevelError(
                f"{variable!r} is categorical: contrast= takes a pair of its levels "
                f"(a, b), or nothing for each level against {levels_of(column)[0]!r}."
            )
        levels = levels_of(column)
        return [((lv, levels[0]), setting(levels[0]), setting(lv), True) for lv in levels[1:]]
    if contrast is None:
        contrast = 1.0
    if isinstance(contrast, str) and contrast == "sd":
        step, label = float(column.std()), "+ sd"
    elif isinstance(contrast, int | float) and not isinstance(contrast, bool):
        step, label = float(contrast), f"+ {contrast:g}"
    else:
        raise MultilevelError(
            f"contrast= for the numeric {variable!r} is a number (x + d against x), 'sd', "
            f"or a pair (a, b); got {contrast!r}."
        )

    def plus(frame):
        return frame.assign(**{variable: frame[variable].astype(float) + step})

    return [((f"x {label}", "x"), lambda frame: frame, plus, False)]


def _contrast_label(comparison, high, low) -> str:
    """``b - a``, ``b / a`` or ``f(b, a)``, as the comparison combines them."""
    if comparison == "ratio":
        return f"{high} / {low}"
    if callable(comparison):
        return f"{getattr(comparison, '__name__', 'f')}({high}, {low})"
    return f"{high} - {low}"


def _comparison_function(comparison) -> Callable:
    if callable(comparison):
        return comparison
    if comparison == "difference":
        return lambda high, low: high - low
    if comparison == "ratio":
        return lambda high, low: high / low
    raise MultilevelError(
        f"comparison must be 'difference', 'ratio' or a function of (high, low); got {comparison!r}."
    )


def _by_columns(by, rows: pd.DataFrame):
    if by is None or by is False:
        return None
    if by is True:
        return []
    columns = [by] if isinstance(by, str) else list(by)
    absent = [c for c in columns if c not in rows.columns]
    if absent:
        raise MultilevelError(
            f"by= names {', '.join(map(repr, absent))}, which the rows lack "
            f"(they have {', '.join(map(str, rows.columns))})."
        )
    return columns


def _group_codes(rows: pd.DataFrame, by: list) -> tuple[np.ndarray, pd.DataFrame]:
    """Each row's group among the combinations of ``by`` (all rows one group for [])."""
    if not by:
        return np.zeros(len(rows), dtype=np.intp), pd.DataFrame(index=[0])
    keys = rows[by].astype(object)
    index = pd.MultiIndex.from_frame(keys)
    codes, uniques = pd.factorize(index, sort=True)
    return codes.astype(np.intp), pd.DataFrame(list(uniques), columns=by)


__all__ = ["Effects", "comparisons", "predictions", "slopes", "typical_value"]
