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

import warnings

import numpy as np
import pandas as pd
import xarray as xr
from scipy import special

from multilevel.design import Design, _check_missing, encode_new
from multilevel.errors import DataError, MultilevelError
from multilevel.families import check_trials, get_family
from multilevel.formula import parse_formula
from multilevel.missing import (
    MissingDataWarning,
    add_shift,
    fitted_eta_shift,
    missing_mode,
    prepare,
)
from multilevel.options import check_seed

__all__ = ["KINDS", "GROUPS", "Prediction", "predict", "fitted_design"]

KINDS = ("mean", "response", "link")
GROUPS = ("sample", "population")
QUANTILES = {"q5": 0.05, "q50": 0.5, "q95": 0.95}
MAX_VALUES = 100_000_000  # draws x rows held at once (800 MB of float64)

_INVERSE_LINK = {
    "identity": lambda eta: eta,
    "logit": special.expit,
    "probit": special.ndtr,
    "log": np.exp,
}

LOADED_FIT = (
    "This fit was read from a file: it keeps the posterior draws and the model's spec, but "
    "not the data's covariates, and encoding rows for prediction needs them (the "
    "categorical coding, transforms and group levels of the fitted data). Give the data "
    "the fit was made from: fit.predict(newdata, data=original) "
    "(command line: multilevel predict FIT NEWDATA --data ORIGINAL)."
)


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

    def __init__(self, draws, data, kind, groups, seed, new_levels, unseen, response):
        self.draws = draws
        self.data = data
        self.kind = kind
        self.groups = groups
        self.seed = seed
        self.new_levels = new_levels
        self.unseen = unseen
        self.response = response

    @property
    def idata(self):
        """The draws as ArviZ InferenceData with one group, ``predictions``."""
        from multilevel._arviz import az

        return az.InferenceData(predictions=self.draws)

    @property
    def values(self) -> np.ndarray:
        """All draws, chains stacked: shape (chains * draws, rows)."""
        values = self.draws[self.response].values
        return values.reshape(-1, values.shape[-1])

    def summary(self) -> pd.DataFrame:
        """The predicted rows' own columns, then mean, sd, q5, q50 and q95 of the draws,
        and ``new_levels``: the grouping factors whose level in that row the fit never saw
        (comma-separated; empty when every level was seen)."""
        values = self.values
        table = self.data.copy()
        table["mean"] = values.mean(axis=0)
        table["sd"] = values.std(axis=0, ddof=1) if values.shape[0] > 1 else np.nan
        for name, q in QUANTILES.items():
            table[name] = np.quantile(values, q, axis=0)
        flags = self.unseen.to_numpy()
        names = list(self.unseen.columns)
        table["new_levels"] = [",".join(n for n, f in zip(names, row) if f) for row in flags]
        return table

    def __repr__(self) -> str:
        chains, draws, rows = self.draws[self.response].shape
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
) -> Prediction:
    """Predict ``newdata`` (default: the fitted rows) from ``fit``; see the module doc.

    ``draws`` (per chain) thins the posterior evenly to that many draws per chain;
    ``data`` is the fitted data, needed only for a fit read with ``ml.load``.
    """
    if kind not in KINDS:
        raise MultilevelError(f"kind must be one of {', '.join(map(repr, KINDS))}, not {kind!r}.")
    if groups not in GROUPS:
        raise MultilevelError(
            f"groups must be one of {', '.join(map(repr, GROUPS))}, not {groups!r}."
        )
    check_seed(seed)
    spec = fit.spec
    design, fitted = fitted_design(fit, data)
    parsed = parse_formula(spec.formula)
    needs_trials = spec.trials is not None and kind != "link"
    if newdata is None:
        frame = fitted
        X = design.X
        blocks = [
            (b.Z, b.codes, np.asarray(b.levels, dtype=object)[b.codes]) for b in design.blocks
        ]
        trials = design.trials
        se = getattr(design, "se", None)
    else:
        frame = newdata
        X, blocks = encode_new(design, parsed, newdata)
        trials = _new_trials(spec, newdata, kind) if needs_trials else None
        se = _new_se(spec, newdata) if kind == "response" else None

    posterior = _thin(fit.idata.posterior, draws)
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    if n_chains * n_draws * len(X) > MAX_VALUES:
        raise MultilevelError(
            f"{n_chains * n_draws} draws x {len(X)} rows is more than {MAX_VALUES:,} values "
            "to hold at once; pass draws=N (per chain) or predict fewer rows at a time."
        )
    beta = np.stack([posterior[c].values.astype(float) for c in spec.columns], axis=-1)
    eta = np.einsum("cdp,np->cdn", beta, X) if X.shape[1] else np.zeros((n_chains, n_draws, len(X)))
    rng = np.random.default_rng(seed)
    new_levels, unseen = {}, {}
    for term, (Z, codes, labels) in zip(spec.terms, blocks):
        missing = codes < 0
        new = tuple(dict.fromkeys(labels[missing]))
        new_levels[term.group] = tuple(str(x) for x in new)
        unseen[term.group] = missing | unseen.get(term.group, False)
        if groups == "population":
            continue
        seen = ~missing
        for j, name in enumerate(term.effect_names):
            if seen.any():
                effects = posterior[name].values.astype(float)  # (chain, draw, levels)
                eta[..., seen] += Z[seen, j] * effects[..., codes[seen]]
        if new:
            drawn = _new_effects(posterior, term, len(new), rng)  # (chain, draw, U, q)
            where = {label: u for u, label in enumerate(new)}
            index = np.array([where[label] for label in labels[missing]], dtype=np.intp)
            eta[..., missing] += np.einsum("nq,cdnq->cdn", Z[missing], drawn[..., index, :])

    if newdata is None:  # the fitted rows' imputed predictor values, per draw
        shift = fitted_eta_shift(spec, design, posterior)
        eta = eta if shift is None else add_shift(eta, *shift)
    values = _on_scale(eta, kind, spec, trials, se, posterior, seed)
    dataset = xr.Dataset(
        {spec.response: (("chain", "draw", "obs"), values)},
        coords={
            "chain": posterior["chain"].values,
            "draw": posterior["draw"].values,
            "obs": np.arange(len(X)),
        },
        attrs={"kind": kind, "groups": groups, "seed": int(seed)},
    )
    unseen_frame = pd.DataFrame(
        {g: np.asarray(v, dtype=bool) for g, v in unseen.items()}, index=frame.index
    )
    return Prediction(
        dataset, frame, kind, groups, int(seed), new_levels, unseen_frame, spec.response
    )


def fitted_design(fit, data: pd.DataFrame | None = None) -> tuple[Design, pd.DataFrame]:
    """The design of the fitted rows and the fitted DataFrame: the Model's, or rebuilt
    from ``data`` for a fit read with ``ml.load`` (checked to be the fitted data)."""
    model = getattr(fit, "model", None)
    if model is not None:
        if not model.in_memory:
            raise MultilevelError(
                "Prediction needs the data's rows, and this fit's model was built from "
                "chunked statistics (Model.from_chunks). Load the rows as a pandas "
                "DataFrame and fit ml.Model(formula, data) to predict."
            )
        return model.design, model.data
    if data is None:
        raise MultilevelError(LOADED_FIT)
    spec = fit.spec
    family, _ = get_family(spec.family, spec.link)
    # rebuilt as the fit built it: with missing values dropped or modelled (placeholders
    # where a predictor is imputed, rows without a response left out) as they were
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingDataWarning)  # reported when it was fitted
        design, data, _, imputed = prepare(
            parse_formula(spec.formula), data, family, missing_mode(spec, fit.info)
        )
    problems = []
    n_rows = fit.info.get("n_rows")
    if n_rows is not None and design.n != n_rows:
        problems.append(f"it has {design.n} rows, the fit {n_rows}")
    if design.columns != spec.columns:
        problems.append(f"its design columns are {design.columns}, the fit's {spec.columns}")
    for block, term in zip(design.blocks, spec.terms):
        if block.levels != term.levels:
            problems.append(f"its levels of {term.group} differ from the fit's")
    for imp in spec.imputed:
        rebuilt = next((i for i in imputed if i.column == imp.column), None)
        if rebuilt is None or rebuilt.positions != imp.positions:
            problems.append(f"its missing values of {imp.column!r} are not the fit's")
    observed = getattr(fit.idata, "observed_data", None)
    if not problems and observed is not None and spec.response in observed:
        y = observed[spec.response].values
        if y.shape != design.y.shape or not np.allclose(y, design.y):
            problems.append(f"its response {spec.response!r} differs from the fitted one")
    if problems:
        raise DataError(
            "The data given is not the data this fit was made from: "
            + "; ".join(problems)
            + ". Pass the same data the model was fitted to."
        )
    return design, data


def _new_trials(spec, newdata: pd.DataFrame, kind: str) -> np.ndarray:
    column = spec.trials
    if column not in newdata.columns:
        raise DataError(
            f"A binomial model predicts counts out of a number of trials: kind={kind!r} "
            f"needs the trials column {column!r} (from `{spec.response} | trials({column})`) "
            f"in newdata. For success probabilities, add {column!r} = 1 to newdata; for "
            "log-odds use kind='link'."
        )
    _check_missing(newdata, [column], then="predict again")
    values = newdata[column].to_numpy()
    check_trials(values, column)
    return values.astype(float)


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
    _check_missing(newdata, [column], then="predict again")
    from multilevel.families import check_se

    return check_se(newdata[column].to_numpy(), column)


def _thin(posterior, draws: int | None):
    if draws is None:
        return posterior
    if not isinstance(draws, (int, np.integer)) or isinstance(draws, bool) or draws < 1:
        raise MultilevelError(f"draws must be a positive whole number (per chain), got {draws!r}.")
    total = posterior.sizes["draw"]
    if draws >= total:
        return posterior
    keep = np.unique(np.linspace(0, total - 1, draws).round().astype(int))
    return posterior.isel(draw=keep)


def _new_effects(posterior, term, n_new: int, rng: np.random.Generator) -> np.ndarray:
    """(chain, draw, n_new, q) effects of new levels: per draw N(0, diag(sd) R diag(sd))."""
    sd = np.stack([posterior[n].values.astype(float) for n in term.sd_names], axis=-1)
    q = sd.shape[-1]
    chol = np.broadcast_to(np.eye(q), (*sd.shape[:-1], q, q))
    if term.has_correlation:
        corr = np.broadcast_to(np.eye(q), (*sd.shape[:-1], q, q)).copy()
        for (i, j), name in zip(term.cor_pairs, term.cor_names):
            corr[..., i, j] = corr[..., j, i] = posterior[name].values
        chol = np.linalg.cholesky(corr + 1e-12 * np.eye(q))
    scale_tril = sd[..., :, None] * chol  # diag(sd) L: (chain, draw, q, q)
    z = rng.standard_normal((*sd.shape[:-1], n_new, q))
    return np.einsum("cdij,cduj->cdui", scale_tril, z)


def _on_scale(eta: np.ndarray, kind: str, spec, trials, se, posterior, seed: int) -> np.ndarray:
    if kind == "link":
        return eta
    if kind == "mean":
        if spec.family == "lognormal":  # eta is the mean of log(y): E[y] = exp(eta + sigma^2/2)
            sigma = posterior["sigma"].values.astype(float)[..., None]
            return np.exp(eta + sigma**2 / 2)
        if spec.link not in _INVERSE_LINK:
            raise MultilevelError(f"kind='mean' does not know the {spec.link!r} link yet.")
        mean = _INVERSE_LINK[spec.link](eta)
        return mean * trials if spec.family == "binomial" else mean
    import jax
    import jax.numpy as jnp

    from multilevel.families import FAMILIES

    aux = {name: jnp.asarray(posterior[name].values)[..., None] for name in spec.aux}
    n = None if trials is None else jnp.asarray(trials, dtype=jnp.int32)
    family = FAMILIES[spec.family]
    if se is None:
        law = family.likelihood(jnp.asarray(eta), spec.link, aux, n)
    else:
        law = family.likelihood(jnp.asarray(eta), spec.link, aux, n, se=jnp.asarray(se))
    return np.asarray(law.sample(jax.random.PRNGKey(seed)), dtype=float)
