"""Fit: posterior draws as ArviZ InferenceData plus the spec; summaries, printing, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from multilevel import diagnostics as diag
from multilevel import effects, evaluation, hypothesis, loglik, r2, saved_fits, tables
from multilevel._arviz import az
from multilevel.errors import FitFileError, MultilevelError
from multilevel.fitted_rows import fit_rows
from multilevel.ppc import ppc
from multilevel.prediction import predict
from multilevel.spec import ModelSpec


class Fit:
    """The result of ``Model.fit``: ``idata`` (ArviZ InferenceData) and ``spec``.

    Examples
    --------
    >>> fit = ml.Model("Reaction ~ Days + (Days | Subject)", data).fit(seed=1)  # doctest: +SKIP
    >>> fit.summary().loc["Days", "mean"]  # doctest: +SKIP
    """

    def __init__(self, idata, spec: ModelSpec, info: dict, model=None):
        self.idata = idata
        self.spec = spec
        self.info = info  # timing, sampler settings, data size, method
        self.model = model  # the Model that made it (with its data); None after ml.load
        self._summaries: dict[tuple[bool, float], pd.DataFrame] = {}
        self.diagnostics = diag.compute(
            self.summary(), _stats_dict(idata), info["settings"]["max_tree_depth"]
        )

    # ----------------------------------------------------------------- numbers
    def summary(self, group_effects: bool = False, prob: float = 0.9) -> pd.DataFrame:
        """Posterior mean, sd, the central ``prob`` interval, R-hat and bulk/tail ESS per
        parameter.

        By default the population-level effects, group-level sd and cor and family
        parameters (as brms ``summary``); ``group_effects=True`` adds every level's effect
        as ``Intercept|county[AITKIN]``. The interval's columns are named by their
        percentiles: ``q5``, ``q95`` for the default 90%, ``q2.5``, ``q97.5`` for
        ``prob=0.95``. A DataFrame that prints every column, each estimate to the
        precision its sd supports (``multilevel.tables``).

        >>> fit.summary(prob=0.95).loc["Intercept", ["q2.5", "q97.5"]]  # doctest: +SKIP
        """
        key = (bool(group_effects), tables.check_prob(prob))
        if key not in self._summaries:
            names = [*self.spec.hyper_names, *self.spec.imputation_names]
            if group_effects:
                names += [n for t in self.spec.terms for n in t.effect_names]
            self._summaries[key] = _summarise(self.idata.posterior[names], key[1])
        return self._summaries[key].copy()

    def draws(self, name: str) -> np.ndarray:
        """All draws of one parameter, chains stacked: shape (chains * draws, ...)."""
        values = self.idata.posterior[name].values
        return values.reshape(-1, *values.shape[2:])

    @property
    def timing(self) -> dict:
        return dict(self.info["timing"])

    def rows(self, data: pd.DataFrame | None = None, what: str = "This"):
        """``(design, frame)``: the design of the fitted rows and those rows.

        From the Model that made the fit; for a fit read with ``ml.load``, rebuilt from
        ``data`` (the data it was fitted to, checked to be). Raises ``MultilevelError``
        saying why there are none (a loaded fit without ``data``, a model built from
        chunked statistics); ``what`` names what needed them in that message."""
        return fit_rows(self.model, self.spec, self.info, self.idata, data, what)

    # ----------------------------------------------------------------- prediction
    def predict(
        self, newdata=None, kind="mean", groups="sample", seed=0, draws=None, data=None, dpar=None
    ):
        """Predictions for ``newdata`` (a DataFrame; default: the fitted rows), one per
        posterior draw. Returns a ``Prediction`` (``.draws``, ``.summary()``).

        ``kind``: ``"mean"`` (expected response; times trials for binomial), ``"response"``
        (draws of new observations) or ``"link"`` (linear predictor). ``groups="sample"``
        uses the posterior effects of levels seen in fitting and draws effects of new
        levels from the fitted population distribution, per draw; ``"population"`` sets
        every group effect to zero. ``draws`` thins to that many draws per chain; ``data``
        (the fitted data) is needed only for a fit read with ``ml.load``. ``dpar``
        predicts a family parameter instead of the response (``"sigma"``: on its own
        scale, or ``kind="link"`` on its link scale; ``"mu"``: the mean). The same
        ``seed`` gives the same draws. Details: ``multilevel.prediction``.

        >>> fit.predict(pd.DataFrame({"Subject": [308, 999], "Days": [5, 5]})).summary()  # doctest: +SKIP
        """
        return predict(
            self, newdata, kind=kind, groups=groups, seed=seed, draws=draws, data=data, dpar=dpar
        )

    def ppc(self, path=None, kind="auto", group=None, n_draws=50, seed=0, data=None):
        """Posterior predictive check: replicate the data from the posterior (stored as
        ``fit.idata.posterior_predictive``) and plot them against the observed data;
        ``group="county"`` adds observed group means against their replicated intervals.
        Returns the matplotlib Figure, saved to ``path`` if given. Details:
        ``multilevel.ppc``.

        >>> fig = fit.ppc("ppc.png", group="Subject")  # doctest: +SKIP
        """
        return ppc(self, path, kind=kind, group=group, n_draws=n_draws, seed=seed, data=data)

    # ----------------------------------------------------------------- effects
    def predictions(self, at=None, by=None, groups="fitted", scale="response", **options):
        """Predictions per row of ``at`` (``"data"``: the fitted rows, the default; a
        DataFrame; or a grid ``{"Days": range(10)}``, other predictors at typical values),
        or averaged within ``by`` (True: all rows; a column or a list of columns).
        ``groups``: ``"fitted"`` (each row's own group), ``"zero"`` (a typical group) or
        ``"integrated"`` (the average over the population of groups); ``scale``:
        ``"response"`` or ``"link"``. Options: ``dpar``, ``prob`` (0.9), ``draws``,
        ``data``, ``seed``. Returns ``Effects`` (``.summary(prob)``, ``.draws``); see
        ``multilevel.effects``.

        >>> fit.predictions(at={"Days": [0, 9]}, groups="integrated")  # doctest: +SKIP
        """
        return effects.predictions(self, at, by, groups, scale, **options)

    def comparisons(self, variable, at=None, by=None, groups="fitted", scale="response", **options):
        """How the prediction changes with ``variable`` (numeric: +1 by default,
        ``contrast=`` a step, ``"sd"`` or a pair; categorical: each level against the
        reference), as a ``"difference"`` or ``"ratio"`` (``comparison=``), per row of
        ``at`` or averaged within ``by``; the rest as ``predictions``.

        >>> fit.comparisons("floor", by=True, groups="integrated")  # doctest: +SKIP
        """
        return effects.comparisons(self, variable, at, by, groups, scale, **options)

    def slopes(self, variable, at=None, by=None, groups="fitted", scale="response", **options):
        """The derivative of the prediction with respect to ``variable`` (``slope=
        "elasticity"``: in % per %), per row of ``at`` or averaged within ``by``; the rest
        as ``predictions``.

        >>> fit.slopes("Days", by=True)  # doctest: +SKIP
        """
        return effects.slopes(self, variable, at, by, groups, scale, **options)

    def plot_effects(
        self, variable, by=None, groups="zero", scale="response", path=None, **options
    ):
        """The prediction against ``variable`` with its interval, the other predictors at
        typical values (brms' ``conditional_effects``): a line and band for a numeric
        variable, points and bars for a categorical one, a line per value of ``by``.
        ``groups`` defaults to ``"zero"`` (brms' ``re_formula = NA``); ``"integrated"``
        averages over groups. Returns the Figure, saved to ``path`` if given.

        >>> fit.plot_effects("Days", groups="integrated", path="days.png")  # doctest: +SKIP
        """
        return effects.plot_effects(self, variable, by, groups, scale, path=path, **options)

    # ----------------------------------------------------------------- evaluation
    def loo(self):
        """PSIS-LOO cross-validation: elpd_loo, its se, p_loo (effective parameters) next
        to the nominal count, Pareto k counts and ``.pointwise`` (a row per observation).
        A ``LooWarning`` names the rows with k >= 0.7. See ``multilevel.evaluation``.

        >>> fit.loo()  # doctest: +SKIP
        """
        return evaluation.loo(self)

    def waic(self):
        """WAIC: elpd_waic, its se, p_waic and ``.pointwise``; prefer ``loo()``."""
        return evaluation.waic(self)

    def kfold(self, *args, **kwargs):
        """Moved: K-fold cross-validation refits the model, so it is a workflow function,
        ``ml.kfold(fit, k=10, by=None, seed=0, progress=True, **fit_kwargs)``."""
        raise MultilevelError(
            "fit.kfold(...) moved to ml.kfold(fit, ...), with the same arguments: K-fold "
            "refits the model, so it lives with the workflows (multilevel.workflow.kfold)."
        )

    # ----------------------------------------------------------------- plots
    def plot_shrinkage(self, *args, **kwargs):
        """Moved: the shrinkage plot fits the no- and complete-pooling variants, so it is
        a workflow: ``ml.compare_pooling(formula, data, partial=fit).plot_shrinkage(path)``."""
        raise MultilevelError(
            "fit.plot_shrinkage(...) moved: it refits the model without and with complete "
            "pooling, so it is a workflow. Use ml.compare_pooling(formula, data, "
            "partial=fit).plot_shrinkage(path)."
        )

    # ----------------------------------------------------------------- printing
    def __repr__(self) -> str:
        return format_fit(self)

    # ----------------------------------------------------------------- storage
    def save(self, path: str | Path) -> Path:
        """Write draws, sampler statistics, data and the spec to one netCDF file.

        Atomic: the file is written beside ``path`` under a temporary name and renamed
        over it, so an existing fit there is replaced only by a complete one (an error,
        Ctrl-C or a crash while writing leaves it as it was). See ``multilevel.saved_fits``.

        The pointwise log-likelihood goes with the draws (computed now if the fit does not
        hold it, up to ``loglik.MAX_SAVED_VALUES`` values, unless the fit was made with
        ``log_likelihood=False``): a saved fit keeps no data, and LOO and WAIC of the file
        read it from there.
        """
        idata, info = loglik.saved_with_log_likelihood(self)
        idata.posterior.attrs[saved_fits.SPEC_ATTRIBUTE] = self.spec.to_json()
        idata.posterior.attrs[saved_fits.INFO_ATTRIBUTE] = json.dumps(info)
        return saved_fits.write(idata, path)

    # --- r2 and hypotheses
    def r2(self, groups: str = "fitted", data=None):
        """Bayesian R² (Gelman et al. 2019) per draw: var(mean) / (var(mean) +
        var(y - mean)) over the fitted rows. ``groups="fitted"``: each row's own group
        effects; ``"zero"``: the population part alone (brms' ``re_formula = NA``).
        ``data``: the fitted data, for a fit read with ``ml.load``. Returns ``R2``
        (``.summary()``, ``.draws``); see ``multilevel.r2``.

        >>> fit.r2().summary()  # doctest: +SKIP
        """
        return r2.bayes_r2(self, groups=groups, data=data)

    def loo_r2(self, groups: str = "fitted", seed: int = 0, data=None):
        """LOO-adjusted R² (brms' ``loo_R2``): PSIS-LOO predictive means in place of the
        fitted ones, its uncertainty by Bayesian bootstrap (``seed``); see ``r2``.

        >>> fit.loo_r2()  # doctest: +SKIP
        """
        return r2.loo_r2(self, groups=groups, seed=seed, data=data)

    def hypothesis(self, *expressions: str, prob: float = 0.9, draws=None, seed: int = 0):
        """Test ``"floor < 0"``, ``"a - b = 0"``, ``"`sd(Intercept|county)` > 0.2"`` on
        the posterior (brms' ``hypothesis``): estimate, sd, interval of probability
        ``prob``, posterior probability and evidence ratio. ``draws``: more named 1-D
        draws (e.g. ``{"ame": effects.draws[:, 0]}``); see ``multilevel.hypothesis``.

        >>> fit.hypothesis("floor < 0", "`sd(Intercept|county)` > 0.2")  # doctest: +SKIP
        """
        return hypothesis.hypothesis(self, *expressions, prob=prob, draws=draws, seed=seed)


def load(path: str | Path) -> Fit:
    """Read a fit written by ``Fit.save``, as data only.

    Nothing in the file is evaluated, unpickled or imported: its HDF5 structure, every
    variable's type, the spec (its formula passes ``parse_formula``'s expression check
    before any use) and the info are checked, and the draws must hold every variable of
    the spec. A file that is not such a fit, or is damaged or edited, raises
    ``FitFileError`` naming the file and what is wrong.
    """
    path = Path(path)
    if not path.exists():
        raise MultilevelError(f"No saved fit at {str(path)!r}.")
    datasets, spec_text, info_text = saved_fits.read(path)
    try:
        spec = ModelSpec.from_json(spec_text)  # checks the formula first, then every field
        info = saved_fits.check_info(info_text)
        saved_fits.check_draws(datasets, spec, info)
    except FitFileError as exc:
        raise FitFileError(
            f"Cannot read the saved fit {str(path)!r}: {exc} {saved_fits.EDITED}"
        ) from None
    try:
        return Fit(az.InferenceData(**datasets), spec, info)
    except (ValueError, KeyError, TypeError, IndexError) as exc:  # what the checks missed
        raise FitFileError(
            f"Cannot read the saved fit {str(path)!r}: its draws do not fit its model spec "
            f"({type(exc).__name__}: {exc})."
        ) from None


def _stats_dict(idata) -> dict:
    stats = idata.sample_stats
    out = {"diverging": stats["diverging"].values, "n_steps": stats["n_steps"].values}
    if "acceptance_rate" in stats:  # a frozen chain rejects every proposal
        out["acceptance_rate"] = stats["acceptance_rate"].values
    return out


def _summarise(posterior, prob: float = 0.9) -> pd.DataFrame:
    """One row per scalar: vector variables become ``name[level]``; the interval's bounds
    are the quantiles of the central ``prob`` interval."""
    # Reductions add in an order that follows the memory layout (pairwise along a
    # contiguous axis, one by one along a strided one), and draws arrive in several:
    # views into the sampler's output, a file's contiguous arrays. Every variable is
    # first copied into one layout, in float64, so the same draws give the same
    # summary to the last digit, before and after save/load.
    posterior = posterior.copy(
        data={
            name: np.ascontiguousarray(variable.values, dtype=np.float64)
            for name, variable in posterior.data_vars.items()
        }
    )
    stacked = posterior.stack(sample=("chain", "draw"))
    r_hat = az.rhat(posterior)
    ess_bulk = az.ess(posterior, method="bulk")
    ess_tail = az.ess(posterior, method="tail")
    bounds = tables.interval_columns(prob)
    rows = {}
    for name in posterior.data_vars:
        values = stacked[name]
        extra = [d for d in values.dims if d != "sample"]
        labels = [name] if not extra else [f"{name}[{v}]" for v in values[extra[0]].values]
        block = np.ascontiguousarray(np.atleast_2d(values.transpose(*extra, "sample").values))
        cols = {
            "mean": block.mean(axis=1),
            "sd": block.std(axis=1, ddof=1),
            **{column: np.quantile(block, q, axis=1) for column, q in bounds.items()},
            "r_hat": np.atleast_1d(r_hat[name].values),
            "ess_bulk": np.atleast_1d(ess_bulk[name].values),
            "ess_tail": np.atleast_1d(ess_tail[name].values),
        }
        for i, label in enumerate(labels):
            rows[label] = {k: float(v[i]) for k, v in cols.items()}
    columns = ["mean", "sd", *bounds, "r_hat", "ess_bulk", "ess_tail"]
    low, high = bounds
    return tables.table(
        pd.DataFrame.from_dict(rows, orient="index", columns=columns),
        precision={
            **dict.fromkeys(["mean", "sd", *bounds], "sd"),
            **{"r_hat": 3, "ess_bulk": 0, "ess_tail": 0},
        },
        caption=f"Posterior mean, sd and central {100 * prob:g}% interval [{low}, {high}]; "
        "R-hat, bulk and tail ESS",
    )


def format_fit(fit: Fit) -> str:
    """lme4-like layout: population effects, sd/cor by grouping factor, family, diagnostics.

    A fit that did not converge starts with that verdict and its advice."""
    spec, info, table = fit.spec, fit.info, fit.summary()
    settings, timing = info["settings"], info["timing"]
    hints = info.get("hints")  # causes found in the data when it was fitted (a list of str)
    hints = tuple(h for h in hints if isinstance(h, str)) if isinstance(hints, list) else ()
    verdict = fit.diagnostics.verdict(hints, spec.centered)
    lines = [
        *([verdict, ""] if verdict else []),
        f"Formula: {spec.formula}",
        *(f"         {d.text}" for d in spec.dpars),
        f"Family:  {spec.family} (link: {spec.link}){spec.levels_text}",
        f"Data:    {info['n_rows']} rows"
        + "".join(f"; {t.group}: {len(t.levels)} groups" for t in _unique_groups(spec)),
        f"Draws:   {settings['chains']} chains x {settings['draws']} "
        f"(warmup {settings['warmup']}), {info['method']}, "
        f"{timing['total_s']:.1f} s (compile {timing['compile_s']:.1f} s)",
        "Estimates: posterior mean, sd and central 90% interval [q5, q95]",
        "",
        "Population-level effects:",
        _table(table.loc[[*spec.threshold_names, *spec.columns]]),  # thresholds first, as brms
    ]
    if spec.cs_names:  # brms prints them among the population-level effects, after them
        lines += ["", "Category-specific effects (one per threshold):"]
        lines += [_table(table.loc[list(spec.cs_names)])]
    if spec.terms:
        lines += ["", "Group-level effects:"]
        for group in dict.fromkeys(t.group for t in spec.terms):
            terms = [t for t in spec.terms if t.group == group]
            names = [n for t in terms for n in (*t.sd_names, *t.cor_names)]
            names += [n for s in spec.linked_terms if s.group == group for n in s.cor_names]
            lines += [f"~{group} ({len(terms[0].levels)} levels)", _table(table.loc[names])]
    if spec.aux:
        lines += ["", "Family-specific parameters:", _table(table.loc[list(spec.aux)])]
    if spec.imputed:
        lines += ["", "Models of missing predictors (missing='model'):"]
        lines += [_table(table.loc[list(spec.imputation_names)])]
    if info.get("missing") and info["missing"] != "no missing values":
        lines += [f"Missing data: {info['missing']}"]
    d = fit.diagnostics
    convergence = (
        f"max R-hat {d.max_r_hat:.3f}, min bulk ESS {d.min_ess_bulk:.0f}, "
        f"min tail ESS {d.min_ess_tail:.0f}"
    )
    if info.get("sampler") == "gibbs":  # no trajectories: nothing diverges or saturates
        lines += ["", f"Diagnostics: {convergence}"]
    else:
        lines += [
            "",
            f"Diagnostics: {d.divergences} divergences, {convergence}, "
            f"tree depth saturated in {d.tree_depth_saturated} of {d.n_draws} draws",
        ]
    lines += [f"  Warning: {p}" for p in d.problems(spec.centered)]
    return "\n".join(lines)


def _unique_groups(spec: ModelSpec):
    return list({t.group: t for t in spec.terms}.values())


def _table(frame: pd.DataFrame) -> str:
    """A block of the summary, each estimate to the precision its sd supports, never in
    scientific notation for ordinary magnitudes (``tables.plain_numbers``), unwrapped."""
    return tables.plain_numbers(frame).to_string()
