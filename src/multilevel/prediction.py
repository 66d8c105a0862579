"""Predictions from a fitted model, for the fitted rows or for new data.

``Fit.predict(newdata, kind, groups, seed, draws)`` returns a :class:`Prediction`: one
prediction per posterior draw and row (dims ``chain``, ``draw``, ``obs``), and a tidy
summary. New data are encoded exactly as the fitted data were (same categorical coding,
same stateful transforms; see ``design.encode_new``).

Group effects, per grouping factor and row:

* ``groups="sample"`` (default): a level seen in fitting uses its posterior effects,
  draw by draw. A level the fit never saw gets new effects drawn, for every posterior
  draw, from the fitted population distribution ``N(0, diag(sd) R diag(sd))`` of that
  draw's ``sd`` and ``cor``: the prediction for a new member of the population, whose
  uncertainty includes the spread between groups. Rows that share a new level share its
  drawn effects. With nested factors ``(1 | a/b)`` a seen ``a`` with an unseen ``a:b``
  uses ``a``'s posterior effect plus a new draw for ``a:b``.
* ``groups="population"``: every group effect is set to zero, seen level or not: the
  prediction for a group whose effects are exactly zero (the "typical" group). On the
  link scale this is the population mean; with a non-identity link the inverse link of
  it is not the average over groups (for that, predict a new level with ``"sample"``).

Scales (``kind``): ``"link"`` the linear predictor; ``"mean"`` the expected value of the
response (inverse link; times the trials for binomial; ``exp(eta + sigma^2 / 2)`` for
lognormal, whose ``eta`` is the mean of ``log(y)``); ``"response"`` a draw from the
likelihood (``Family.likelihood``), i.e. the posterior predictive distribution of a new
observation. Binomial ``"mean"`` and ``"response"`` need the trials column in newdata;
``"response"`` of a model with known standard errors (``y | se(s) ~ ...``) needs ``s``.
An ordinal or categorical model's ``"mean"`` is the probability of each category, dims
(chain, draw, obs, category) with the categories as labels (brms' ``posterior_epred``); its
``"response"`` draws categories numbered 1..K in their order (``posterior_predict``).
Its ``"link"`` is ``eta`` (thresholds apart); with category-specific effects ``cs()`` it
is one linear predictor per threshold, ``eta + sum_j z_j b_jk``, dims (chain, draw, obs,
threshold) (brms' ``posterior_linpred``), so that ``P`` reads ``F(theta_k - link_k)``.
A multinomial model's ``"mean"`` is the probability of each category too (the expected
proportions: brms multiplies them by the trials), its ``"response"`` draws counts per
category out of each row's total, dims (chain, draw, obs, category); new rows give
their totals as the count columns (their sums) or the ``trials()`` column.
Offsets (``offset()``, ``rate()``) of new rows are read from newdata.
The same ``seed`` gives identical draws.

A fit read with ``ml.load`` keeps the draws and the spec but not the covariates, which
encoding new data needs; give the data the fit was made from as ``data=`` (CLI:
``multilevel predict FIT NEWDATA --data ORIGINAL``): the design is rebuilt from the
spec's formula, with missing values dropped or modelled as the fit did, and checked to be
the fitted one (same rows, columns, levels, response, imputed cells). New rows are encoded
with copies of the fitted encodings, so a call that fails leaves the fit as it was.

Examples
--------
>>> import multilevel as ml
>>> sleep = ml.datasets.load("sleepstudy")
>>> fit = ml.Model("Reaction ~ Days + (Days | Subject)", sleep).fit(seed=1)  # doctest: +SKIP
>>> new = pd.DataFrame({"Subject": [308, 999], "Days": [5, 5]})
>>> pred = fit.predict(new, kind="response")  # doctest: +SKIP
>>> pred.summary()  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from multilevel import tables
from multilevel.design import (
    check_missing,
    encode_category_specific,
    encode_new,
    offset_of,
    truncation_bounds,
)
from multilevel.errors import DataError, MultilevelError
from multilevel.families import DPAR_LINKS, FAMILIES, check_se, check_trials
from multilevel.formula import parse_dpar, parse_formula
from multilevel.formula.distributional import MU
from multilevel.linear_predictor import (
    add_shift,
    dpar_values,
    fitted_eta_shift,
    layout_of,
    linear_predictors,
    named_draws,
    per_row,
    row_arrays,
)
from multilevel.missing import row_label
from multilevel.options import check_count, check_seed
from multilevel.population_average import (
    contribution_covariance,
    integrate,
    predictors_with_groups,
    scale_trils,
)

__all__ = ["KINDS", "GROUPS", "Prediction", "predict"]

KINDS = ("mean", "response", "link")
GROUPS = ("sample", "population", "integrated")
QUANTILES = {"q5": 0.05, "q50": 0.5, "q95": 0.95}
MAX_VALUES = 100_000_000  # draws x rows held at once (800 MB of float64)


class Prediction:
    """Predictions of ``kind`` for the rows of ``data``, one per posterior draw.

    Attributes
    ----------
    draws : xarray.Dataset
        The ``predictions`` group: one variable named as the response, dims
        ``(chain, draw, obs)``; ``obs`` numbers the rows of ``data``.
    data : pandas.DataFrame
        The rows predicted (newdata, or the fitted data).
    kind, groups, seed : as passed to ``predict``.
    new_levels : dict
        Per grouping factor, the level labels the fit never saw (empty when none).
    unseen : pandas.DataFrame
        One boolean column per grouping factor: True where that row's level is new.
    """

    def __init__(
        self, draws, data, kind, groups, seed, new_levels, unseen, response, categories=()
    ):
        self.draws = draws
        self.data = data
        self.kind = kind
        self.groups = groups
        self.seed = seed
        self.new_levels = new_levels
        self.unseen = unseen
        self.response = response
        # labels of the categories drawn as 1..K (kind "response" of an ordinal or
        # categorical model), () otherwise
        self.categories = tuple(categories)

    @property
    def idata(self):
        """The draws as ArviZ InferenceData with one group, ``predictions``."""
        from multilevel._arviz import az

        return az.InferenceData(predictions=self.draws)

    @property
    def values(self) -> np.ndarray:
        """All draws, chains stacked: shape (chains * draws, rows)."""
        values = self.draws[self.response].values
        return values.reshape(-1, *values.shape[2:])

    def summary(self, prob: float = 0.9) -> pd.DataFrame:
        """The predicted rows' own columns, then mean, sd, median (q50) and the central
        ``prob`` interval of the draws (``q5``, ``q95`` for 90%; ``q2.5``, ``q97.5`` for
        ``prob=0.95``), and ``new_levels``: the grouping factors whose level in that row
        the fit never saw (comma-separated; empty when every level was seen). A DataFrame
        that prints every column, each prediction to the precision its sd supports.

        Per category instead: ``P(level)``, the mean probability (kind "mean" of an
        ordinal or categorical model) or the share of draws that drew it (kind
        "response", as brms' ``predict``); ``mean(level)``, a multinomial's mean count;
        ``link[k]``, a ``cs()`` model's mean linear predictor at threshold k."""
        low, high = tables.interval_columns(tables.check_prob(prob)).items()
        values = self.values
        table = self.data.copy()
        columns = []  # predictions with an sd
        if "threshold" in self.draws.dims:  # a cs() model's eta per threshold: their means
            for k in self.draws["threshold"].values:
                table[f"link[{k}]"] = values[..., k - 1].mean(axis=0)
        elif values.ndim == 3:  # per category: probabilities, or a multinomial's counts
            what = "P" if self.kind == "mean" else "mean"
            for j, level in enumerate(self.draws["category"].values):
                table[f"{what}({level})"] = values[..., j].mean(axis=0)
        elif self.categories:  # categories drawn as 1..K: how often each was drawn
            for j, level in enumerate(self.categories):
                table[f"P({level})"] = (values == j + 1).mean(axis=0)
        else:
            table["mean"] = values.mean(axis=0)
            table["sd"] = values.std(axis=0, ddof=1) if values.shape[0] > 1 else np.nan
            for name, q in (low, ("q50", 0.5), high):
                table[name] = np.quantile(values, q, axis=0)
            columns = ["mean", "sd", low[0], "q50", high[0]]
        flags = self.unseen.to_numpy()
        names = list(self.unseen.columns)
        table["new_levels"] = [",".join(n for n, f in zip(names, row) if f) for row in flags]
        return tables.table(table, precision=dict.fromkeys(columns, "sd"))

    def __repr__(self) -> str:
        chains, draws, rows = self.draws[self.response].shape[:3]
        lines = [
            f"Prediction: kind={self.kind!r}, groups={self.groups!r}, seed={self.seed}, "
            f"{rows} rows x {chains} chains x {draws} draws"
        ]
        for group, labels in self.new_levels.items():
            if labels:
                shown = ", ".join(labels[:5]) + (" ..." if len(labels) > 5 else "")
                how = (
                    "effects drawn from the fitted population distribution"
                    if self.groups == "sample"
                    else "effects set to zero, as for every group"
                )
                lines.append(
                    f"New levels of {group} ({len(labels)}: {shown}) in "
                    f"{int(self.unseen[group].sum())} rows: {how}."
                )
        return "\n".join(lines)


def predict(
    fit,
    newdata: pd.DataFrame | None = None,
    kind: str = "mean",
    groups: str = "sample",
    seed: int = 0,
    draws: int | None = None,
    data: pd.DataFrame | None = None,
    dpar: str | None = None,
) -> Prediction:
    """Predict ``newdata`` (default: the fitted rows) from ``fit``; see the module doc.

    ``draws`` (per chain) thins the posterior evenly to that many draws per chain;
    ``data`` is the fitted data, needed only for a fit read with ``ml.load``; ``dpar``
    names a family parameter to predict instead of the response.
    """
    if kind not in KINDS:
        raise MultilevelError(f"kind must be one of {', '.join(map(repr, KINDS))}, not {kind!r}.")
    if groups not in GROUPS:
        raise MultilevelError(
            f"groups must be one of {', '.join(map(repr, GROUPS))}, not {groups!r}."
        )
    check_seed(seed)
    spec = fit.spec
    dpar = _check_dpar(spec, dpar, kind)
    design, fitted = fit.rows(data, what="Prediction")
    family = FAMILIES[spec.family]
    # a multinomial's "mean" is its category probabilities, which need no totals
    counted = kind == "response" or (kind == "mean" and not family.multivariate_response)
    needs_trials = family.needs_trials and counted and dpar == MU
    if newdata is None:
        frame = fitted
        rows = row_arrays(design)
        labels = [np.asarray(b.levels, dtype=object)[b.codes] for b in design.all_blocks]
        trials = design.trials
        se = getattr(design, "se", None)
        bounds = {k: v for k, v in rows["bounds"].items() if k in ("lower", "upper")}
    else:
        frame = newdata
        absent = [] if groups == "sample" else _absent_factors(spec, newdata)
        if absent:  # effects unused: the grouping columns need not be given
            newdata = newdata.assign(**{f: UNUSED_LEVEL for f in absent})
        rows, labels = _encode_rows(design, spec, newdata)
        trials = _new_trials(spec, newdata, kind) if needs_trials else None
        se = _new_se(spec, newdata) if kind == "response" else None
        bounds = {}
        if kind == "response":  # draws of a truncated response stay within its bounds
            bounds = truncation_bounds(parse_formula(spec.formula), newdata)
    n = len(frame)

    posterior = _thin(fit.idata.posterior, draws)
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    if n_chains * n_draws * n > MAX_VALUES:
        raise MultilevelError(
            f"{n_chains * n_draws} draws x {n} rows is more than {MAX_VALUES:,} values "
            "to hold at once; pass draws=N (per chain) or predict fewer rows at a time."
        )
    beta, effects, aux = named_draws(spec, posterior)
    rng = np.random.default_rng(seed)
    new_levels, unseen = {}, {}
    codes = list(rows["codes"])
    linked = {k: each for each in spec.linked_terms for k in each.terms}
    linked_draws: dict = {}  # a linked set's group -> its new levels' effects, every term's
    for k, term in enumerate(spec.terms):
        missing = codes[k] < 0
        new = tuple(dict.fromkeys(labels[k][missing]))
        if term.dpar == MU and not (newdata is not None and set(term.factors) & set(absent)):
            new_levels[term.group] = tuple(str(x) for x in new)
            unseen[term.group] = missing | unseen.get(term.group, False)
        if groups != "sample":  # zero, or integrated out below
            effects[k] = None
            continue
        if new:  # effects of new levels, drawn per draw, appended after the fitted ones
            if k in linked:  # drawn jointly with the other terms of its ID (|p|)
                each = linked[k]
                if each.cor_key not in linked_draws:
                    joint = _new_effects(posterior, each.sd_names, each, len(new), rng)
                    starts = np.cumsum([0] + [len(spec.terms[j].coefs) for j in each.terms])
                    linked_draws[each.cor_key] = {
                        j: joint[..., starts[i] : starts[i + 1]] for i, j in enumerate(each.terms)
                    }
                drawn = linked_draws[each.cor_key][k]
            else:
                drawn = _new_effects(posterior, term.sd_names, term, len(new), rng)
            where = {label: u for u, label in enumerate(new)}
            codes[k] = codes[k].copy()
            codes[k][missing] = len(term.levels) + np.array(
                [where[label] for label in labels[k][missing]], dtype=np.intp
            )
            effects[k] = np.concatenate([effects[k], drawn], axis=-2)
    rows = {**rows, "codes": tuple(codes)}
    layout = layout_of(spec)
    etas = linear_predictors(layout, rows, beta, effects)
    if newdata is None:  # the fitted rows' imputed predictor values, per draw
        shift = fitted_eta_shift(spec, design, posterior)
        etas[MU] = etas[MU] if shift is None else add_shift(etas[MU], *shift)
    shared = aux.get("thresholds")  # (C, D, K - 1)
    aux = per_row(aux, rows.get("X_cs"))  # (C, D, 1); thresholds (C, D, 1 or n, K - 1)
    if groups == "integrated" and spec.terms and kind != "link":
        # E[eta + c] = eta on the link scale; on the others, average over the groups
        values, error = _integrated(spec, posterior, rows, layout, etas, aux, kind, dpar,
                                    (trials, se, seed, bounds))  # fmt: skip
        prediction = _prediction(spec, posterior, values, frame, kind, groups, seed,
                                 new_levels, unseen, dpar)  # fmt: skip
        # the largest Monte Carlo se the integral left (0: quadrature, to ~1e-10)
        prediction.draws.attrs["integration_error"] = error
        return prediction
    aux.update(dpar_values(layout, etas))  # (C, D, n)
    if spec.cs_columns and kind == "link" and dpar == MU:
        # brms' linear predictor of a cs() model, one per threshold: eta + the
        # category-specific part, i.e. the row's shift of each threshold
        values = etas[MU][..., None] + (shared[..., None, :] - aux["thresholds"])
    elif dpar != MU:
        if kind == "link":
            values = etas[dpar] if dpar in etas else _link_of(dpar, aux[dpar])
        else:
            values = aux[dpar]
        values = np.broadcast_to(values, etas[MU].shape).copy()
    else:
        values = _on_scale(etas[MU], kind, spec, trials, se, aux, seed, bounds)
    return _prediction(spec, posterior, values, frame, kind, groups, seed, new_levels, unseen, dpar)


def _prediction(spec, posterior, values, frame, kind, groups, seed, new_levels, unseen, dpar):
    """The ``Prediction`` of ``values`` (chain, draw, obs[, category or threshold])."""
    import xarray as xr  # 50 ms: imported with the first prediction, not with multilevel.Fit

    name = spec.response if dpar == MU else dpar
    dims, coords = ("chain", "draw", "obs"), {}
    if values.ndim == 4 and kind == "link":  # a cs() model's eta per threshold
        dims, coords = (*dims, "threshold"), {"threshold": list(range(1, values.shape[-1] + 1))}
    elif values.ndim == 4:  # category probabilities, or a multinomial's counts per category
        dims, coords = (*dims, "category"), {"category": list(spec.response_levels)}
    dataset = xr.Dataset(
        {name: (dims, values)},
        coords={
            "chain": posterior["chain"].values,
            "draw": posterior["draw"].values,
            "obs": np.arange(len(frame)),
            **coords,
        },
        attrs={"kind": kind, "groups": groups, "seed": int(seed), "dpar": dpar},
    )
    unseen_frame = pd.DataFrame(
        {g: np.asarray(v, dtype=bool) for g, v in unseen.items()}, index=frame.index
    )
    family = FAMILIES[spec.family]
    drawn_categories = kind == "response" and dpar == MU and (family.ordinal or family.categorical)
    return Prediction(
        dataset, frame, kind, groups, int(seed), new_levels, unseen_frame, name,
        categories=spec.response_levels if drawn_categories else (),
    )  # fmt: skip


UNUSED_LEVEL = "(no group: effects unused)"  # fills grouping columns newdata leaves out


def _absent_factors(spec, newdata: pd.DataFrame) -> list[str]:
    """Grouping columns of the model that ``newdata`` lacks (allowed where no group's
    own effects are used: ``groups="population"`` or ``"integrated"``)."""
    factors = dict.fromkeys(f for t in spec.terms for f in t.factors)
    return [f for f in factors if f not in newdata.columns]


def _integrated(spec, posterior, rows, layout, etas, aux, kind, dpar, extras):
    """Values on the scale ``kind`` ("mean" or "response") with group effects averaged
    over their fitted population distribution, draw by draw (``population_average``):
    "mean" integrates the expected value, "response" draws each row's group
    contributions once from that distribution before drawing the response. Returns the
    values and the largest Monte Carlo se of the integral (0 for quadrature)."""
    trials, se, seed, bounds = extras
    names = predictors_with_groups(spec)
    family = FAMILIES[spec.family]
    # the mean's predictor enters a gaussian-like mean linearly, and a parameter not at all
    linear = (MU,) if spec.link == "identity" and family.outcome == "real" else ()
    if kind == "mean" and dpar == MU and names == linear:  # the typical group's, exactly
        params = {**aux, **dpar_values(layout, etas)}
        return _on_scale(etas[MU], kind, spec, trials, se, params, seed, bounds), 0.0
    covariance = contribution_covariance(spec, posterior, rows["Z"])

    def value_at(shifted: dict) -> np.ndarray:
        params = {**aux, **dpar_values(layout, shifted)}
        if dpar != MU:
            return np.broadcast_to(params[dpar], shifted[MU].shape)
        return _on_scale(shifted[MU], kind, spec, trials, se, params, seed, bounds)

    if kind == "response":  # one draw of the contributions per draw and row
        rng = np.random.default_rng(seed)
        factor = np.linalg.cholesky(covariance + 1e-12 * np.eye(len(names)))
        shift = (factor @ rng.standard_normal((*covariance.shape[:-1], 1)))[..., 0]
        shifted = {**etas, **{p: etas[p] + shift[..., i] for i, p in enumerate(names)}}
        return value_at(shifted), 0.0
    return integrate(value_at, etas, covariance, names, linear)


def _check_dpar(spec, dpar, kind: str) -> str:
    """``dpar`` as a name: ``"mu"`` for the response (None), or a family parameter."""
    if dpar is None or dpar == MU:
        return MU
    names = [*spec.aux, *(d.name for d in spec.dpars)]
    if dpar not in names:
        raise MultilevelError(
            f"dpar={dpar!r}: this model's parameters are 'mu'"
            + "".join(f", {n!r}" for n in names)
            + "."
        )
    if kind == "response":
        raise MultilevelError(
            f"kind='response' draws new observations of the response; for {dpar} use "
            "kind='mean' (its value per row and draw) or kind='link' (its linear predictor)."
        )
    return dpar


def _link_of(dpar: str, values: np.ndarray) -> np.ndarray:
    """A family parameter without a formula, on its natural link scale."""
    values = np.asarray(values, dtype=float)
    link = DPAR_LINKS.get(dpar, "identity")
    if link == "log":
        return np.log(values)
    return np.log(values - 1.0) if link == "logm1" else values


def _encode_rows(design, spec, newdata: pd.DataFrame) -> tuple[dict, list]:
    """``row_arrays`` of new rows, encoded as the fitted rows were, and each term's
    level labels per row (codes are -1 for levels the fit lacks)."""
    X, blocks = encode_new(design, parse_formula(spec.formula), newdata)
    X_dpars = []
    for d, dpar_design in zip(spec.predicted_dpars, design.dpars):
        parsed = parse_dpar(d.name, d.formula, spec.response)
        X_d, blocks_d = encode_new(dpar_design, parsed, newdata)
        X_dpars.append(X_d)
        blocks = [*blocks, *blocks_d]
    rows = {
        "X": X,
        "X_cs": encode_category_specific(design, newdata),  # cs() columns, or None
        "offset": offset_of(parse_formula(spec.formula), newdata),  # offset(), rate()
        "X_dpars": tuple(X_dpars),
        "Z": tuple(Z for Z, _, _ in blocks),
        "codes": tuple(c for _, c, _ in blocks),
    }
    return rows, [labels for _, _, labels in blocks]


def _new_trials(spec, newdata: pd.DataFrame, kind: str) -> np.ndarray:
    column = spec.trials
    parsed = parse_formula(spec.formula)
    if FAMILIES[spec.family].multivariate_response and column is None:
        columns = spec.response_levels  # the count columns: their sum is each row's total
        return _column_sum(newdata, columns, lambda absent: (
            f"A multinomial model draws counts out of each row's total: kind={kind!r} needs "
            f"the count columns {', '.join(map(repr, columns))} in newdata (their sum is the "
            f"total; {absent} absent), or fit with `| trials(n)` and give n. For the category "
            "probabilities use kind='mean'."
        ))  # fmt: skip
    if column is None and parsed.failures is not None:  # cbind(k, f): k + f trials
        return _column_sum(newdata, (spec.response, parsed.failures), lambda absent: (
            f"A binomial model written `cbind({spec.response}, {parsed.failures})` counts "
            f"successes out of {spec.response} + {parsed.failures} trials: kind={kind!r} "
            f"needs both columns in newdata ({absent} absent). Or refit it as "
            "`k | trials(n) ~ ...` and give n."
        ))  # fmt: skip
    if column not in newdata.columns:
        raise DataError(
            f"A binomial model predicts counts out of a number of trials: kind={kind!r} "
            f"needs the trials column {column!r} (from `{spec.response} | trials({column})`) "
            f"in newdata. For success probabilities, add {column!r} = 1 to newdata; for "
            "log-odds use kind='link'."
        )
    check_missing(newdata, [column], then="predict again")
    values = newdata[column].to_numpy()
    check_trials(values, column)
    return values.astype(float)


def _column_sum(newdata: pd.DataFrame, columns, refusal) -> np.ndarray:
    """Each new row's trials as the sum of ``columns`` (a multinomial's counts, lme4's
    ``cbind(k, f)``), checked; ``refusal(absent)`` is the message when newdata lacks
    some of them (``absent``: their names)."""
    absent = [c for c in columns if c not in newdata.columns]
    if absent:
        raise DataError(refusal(", ".join(map(repr, absent))))
    check_missing(newdata, list(columns), then="predict again")
    values = newdata[list(columns)].to_numpy(dtype=float).sum(axis=1)
    check_trials(values, " + ".join(columns))
    return values


def _new_se(spec, newdata: pd.DataFrame) -> np.ndarray | None:
    """Known standard errors (``y | se(s) ~ ...``) of new rows, for response draws."""
    column = getattr(spec, "se", None)
    if column is None:
        return None
    if column not in newdata.columns:
        raise DataError(
            f"This model's response has known standard errors (`| se({column})`): "
            f"kind='response' draws new observations with them, so newdata needs the "
            f"column {column!r}. kind='mean' and 'link' do not."
        )
    check_missing(newdata, [column], then="predict again")
    return check_se(newdata[column].to_numpy(), column)


def _thin(posterior, draws: int | None):
    if draws is None:
        return posterior
    draws = check_count("draws (per chain)", draws)
    total = posterior.sizes["draw"]
    if draws >= total:
        return posterior
    keep = np.unique(np.linspace(0, total - 1, draws).round().astype(int))
    return posterior.isel(draw=keep)


def _new_effects(posterior, sd_names, correlations, n_new: int, rng) -> np.ndarray:
    """(chain, draw, n_new, q) effects of new levels: per draw N(0, diag(sd) R diag(sd)),
    ``sd_names`` naming the sds, R from ``correlations`` (a term or a set of linked
    terms: ``cor_pairs`` and ``cor_names``; the identity where it has none)."""
    scale_tril = scale_trils(posterior, sd_names, correlations)  # (chain, draw, q, q)
    z = rng.standard_normal((*scale_tril.shape[:-2], n_new, scale_tril.shape[-1]))
    return np.einsum("cdij,cduj->cdui", scale_tril, z)


def _on_scale(
    eta: np.ndarray, kind: str, spec, trials, se, aux: dict, seed: int, bounds=None
) -> np.ndarray:
    """The mean's linear predictor ``eta`` (C, D, n) on the scale ``kind`` asks for, with
    the family parameters ``aux`` ((C, D, 1) or, with a formula, (C, D, n)); ``bounds``
    (``lower``/``upper`` (n,)) truncate response draws. The mean of a truncated
    response is that of the untruncated distribution (as brms' ``posterior_epred``)."""
    if kind == "link":
        return eta
    family = FAMILIES[spec.family]
    categories = family.ordinal or family.categorical
    if kind == "mean" and (categories or family.multivariate_response):  # (C, D, n, K)
        # brms' posterior_epred (of a multinomial: proportions, not counts)
        return family.category_probabilities(eta, spec.link, aux)
    if kind == "mean":
        return family.mean(eta, spec.link, aux, trials)
    if categories:  # drawn categories, numbered 1..K as brms' posterior_predict
        return family.draw(eta, spec.link, aux, trials, se, seed, bounds) + 1.0
    return family.draw(eta, spec.link, aux, trials, se, seed, bounds)


# --------------------------------------------------------------- missing responses
def add_predicted_responses(fit, frame: pd.DataFrame, seed: int) -> None:
    """Draws of the missing responses (rows ``frame``) as ``mi(<response>)`` in the
    posterior: kind "response" predictions from each draw, with the row's group effects
    (drawn from the population for a level the fitted rows lack) and, where a predictor
    is missing too, a draw of it from its own model."""
    spec, posterior = fit.spec, fit.idata.posterior
    placeholders = frame.copy()
    gaps = []
    for imp in spec.imputed:
        absent = placeholders[imp.column].isna().to_numpy()
        if absent.any():
            placeholders[imp.column] = placeholders[imp.column].fillna(0.0)
            gaps.append((imp, absent))
    # (C, D, n); a cs() model's (C, D, n, K - 1): eta per threshold
    eta = predict(fit, placeholders, kind="link", seed=seed).draws[spec.response].values
    rng = np.random.default_rng([seed, 1])  # predictor draws: apart from predict's stream
    for imp, absent in gaps:
        moved = placeholders.assign(**{imp.column: np.where(absent, 1.0, placeholders[imp.column])})
        # the same seed draws the same effects for new levels, so this is the slope per draw
        slope = predict(fit, moved, kind="link", seed=seed).draws[spec.response].values - eta
        x = _predictor_draws(fit, imp, placeholders.loc[absent], rng)
        x = x.reshape(x.shape + (1,) * (eta.ndim - 3))  # rows are axis 2 either way
        eta[:, :, absent] += x * slope[:, :, absent]
    trials = _new_trials(spec, frame, "response") if spec.trials else None
    _, _, aux = named_draws(spec, posterior)
    cs_model = aux.pop("b_cs", None) is not None
    aux = per_row(aux)  # (C, D, 1); thresholds (C, D, 1, K - 1)
    if cs_model:  # theta_k - (eta + cs_k) as each row's thresholds, beside an eta of 0
        aux["thresholds"] = aux["thresholds"] - eta
        eta = np.zeros(eta.shape[:-1])
    values = _on_scale(eta, "response", spec, trials, _new_se(spec, frame), aux, seed)
    name = f"mi({spec.response})"
    fit.idata.posterior[name] = (("chain", "draw", f"{name}_row"), values)
    fit.idata.posterior = fit.idata.posterior.assign_coords(
        {f"{name}_row": [row_label(i) for i in frame.index]}
    )


def _predictor_draws(fit, imp, rows: pd.DataFrame, rng) -> np.ndarray:
    """(chain, draw, rows) draws of a missing predictor from its model: intercept +
    the row level's varying intercept (a new draw for a level the fit lacks) + noise."""
    posterior = fit.idata.posterior
    intercept = posterior[imp.names[0]].values[..., None]
    sigma = posterior[imp.names[-1]].values[..., None]
    shape = (*intercept.shape[:2], len(rows))
    mean = np.broadcast_to(intercept, shape).copy()
    if imp.group is not None:
        _, blocks = encode_new(fit.model.design, parse_formula(fit.spec.formula), rows)
        _, codes, labels = blocks[imp.block]
        seen = codes >= 0
        mean[..., seen] += posterior[imp.effect_name].values[..., codes[seen]]
        new = pd.unique(labels[~seen])  # one draw per new level, shared by its rows
        if len(new):
            sd = posterior[imp.names[1]].values[..., None]
            drawn = sd * rng.standard_normal((*shape[:2], len(new)))
            index = pd.Index(new).get_indexer(labels[~seen])
            mean[..., ~seen] += drawn[..., index]
    return mean + sigma * rng.standard_normal(shape)
