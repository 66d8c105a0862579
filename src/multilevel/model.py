"""Model: formula + data + family + priors -> ModelSpec and arrays; ``fit`` runs NUTS."""

from __future__ import annotations

import copy
import dataclasses
import functools

import numpy as np
import pandas as pd

from multilevel import diagnostics as diag
from multilevel import loglik
from multilevel import missing as missing_values
from multilevel._arviz import az, import_in_background
from multilevel.backends import (
    aggregate,
    centring,
    gaussian_collapsed,
    gaussian_gibbs,
    laplace,
    padding,
    start,
)
from multilevel.backends import numpyro_model as backend
from multilevel.design import check_category_specific
from multilevel.errors import MultilevelError, OptionError
from multilevel.families import FAMILIES, check_truncated_draws, dpar_link, get_family
from multilevel.fit import Fit
from multilevel.fitted_rows import prepare_rows, with_default_formulas
from multilevel.formula import parse_formula
from multilevel.inference import chain_processes as chain_processes_module
from multilevel.inference import collapsed, gibbs, nuts, placement
from multilevel.inference import laplace as laplace_sampler
from multilevel.inference import sharding as row_sharding
from multilevel.inference.compile import prng_key, row_pass_options
from multilevel.options import FIT_DEFAULTS, check_method, check_sampler_options, check_seed
from multilevel.prediction import add_predicted_responses
from multilevel.prior_check import prior_predictive_check
from multilevel.prior_rules import (
    DEFAULT,
    default_priors,
    dpar_centre,
    dpar_classes,
    dpar_defaults,
    linked_defaults,
    resolve_priors,
    threshold_defaults,
    with_category_specific_defaults,
)
from multilevel.simulation import simulate
from multilevel.spec import (
    DparSpec,
    ModelSpec,
    TermSpec,
    link_terms,
    linked_sets,
    shared_ids,
    threshold_names,
)


class Model:
    """A Bayesian multilevel regression model.

    Parameters
    ----------
    formula : str or DistributionalFormula
        lme4/brms formula, e.g. ``"log_radon ~ floor + (1 + floor | county)"``, or
        ``ml.bf(formula, sigma="~ x + (1 | g)")`` to give family parameters formulas of
        their own (distributional regression) or fixed values (``nu=4``).
    data : pandas.DataFrame
    family : {"gaussian", "student_t", "bernoulli", "binomial", "poisson", "negative_binomial", "gamma", "lognormal", "beta", "zero_inflated_poisson", "zero_inflated_negative_binomial", "hurdle_poisson", "hurdle_negative_binomial"}
    link : str, optional
        Defaults to the family's canonical link; bernoulli also takes "probit".
    priors : dict, optional
        Priors by parameter name or class (``Intercept``, ``b``, ``sd``, ``cor``, ``sigma``),
        e.g. ``{"sd": ml.HalfNormal(1), "floor": ml.Normal(0, 10)}``.
    centered : bool, optional
        Sample group effects directly (centred) instead of as scaled standard normals.
        None (default) chooses from the data: centred, with the intercept as the
        groups' mean, for the lone group term of a bernoulli, binomial or poisson model
        whose many groups are rich in data (``backends.centring``), each slope centred
        partially, as far as its groups inform it (the printed model says how far);
        for the gaussian family per term (``gaussian_collapsed.plan``); non-centred
        otherwise. ``True`` centres every effect fully.
    missing : {"error", "drop", "model"}
        What to do with missing values in the columns the formula uses: refuse them
        (default, listing the columns and counts), drop their rows (with a
        ``MissingDataWarning`` saying how many), or model them: missing responses are
        predicted from the posterior and missing numeric predictors imputed inside the
        sampler, as brms' ``mi()``. ``model.missing`` says what was done; details in
        ``multilevel.missing``.

    Examples
    --------
    >>> import multilevel as ml
    >>> radon = ml.datasets.load("radon")
    >>> model = ml.Model("log_radon ~ floor + (1 | county)", radon)
    >>> fit = model.fit(chains=4, draws=500, seed=1)  # doctest: +SKIP
    >>> fit.summary()  # doctest: +SKIP
    """

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame,
        family: str = "gaussian",
        link: str | None = None,
        priors: dict | None = None,
        centered: bool | tuple[bool, ...] | None = None,
        missing: str = "error",
    ):
        family_obj, link = get_family(family, link)
        distributional = with_default_formulas(formula, family_obj, data)
        formula = distributional.formula
        parsed = parse_formula(formula)
        if parsed.rate is not None and link != "log":
            raise MultilevelError(
                f"`rate({parsed.rate})` multiplies the mean by the exposure, which this "
                f"model writes as the offset log({parsed.rate}) on a log link; the "
                f"{family_obj.name} family with link={link!r} has none. Use link='log', or "
                f"an offset of your own on the {link} scale (`offset(...)`)."
            )
        design, fitted, self.missing, imputed = prepare_rows(
            distributional, family_obj, data, missing
        )
        self._dpar_specs = {
            **{name: (rhs, None) for name, rhs in distributional.predicted.items()},
            **{name: ("", value) for name, value in distributional.fixed.items()},
        }
        _check_centring_applies(design, centered)
        flags = centring.term_flags(design, family_obj.name, centered)
        flags = _uncentred_if_linked(design, flags, centered)
        weights = centring.term_weights(design, family_obj.name, flags, centered)
        if isinstance(centered, tuple):  # one flag per term: a choice for all only if they agree
            centered = flags[0] if len(set(flags)) == 1 else None
        # the user's choice, kept for the collapsed sampler's per-term rule (None: the data's)
        self._centered_choice = centered
        self._setup(formula, parsed, design, family, link, priors, flags, imputed, weights)
        self.data = fitted  # the rows in the likelihood

    @classmethod
    def from_chunks(
        cls,
        formula: str,
        source,
        priors: dict | None = None,
        chunk_rows: int = 1_000_000,
        progress: bool = True,
    ) -> Model:
        """A Gaussian model with one grouping factor, from data that need not fit in memory.

        ``source`` is a Parquet file or directory, a list of DataFrames (or a function
        returning an iterator of them) or a Dask DataFrame (reduced where it lives; needs
        ``pip install "multilevel[cluster]"``). The rows are read twice in chunks of
        ``chunk_rows`` and reduced to per-group sufficient statistics: memory grows with
        the number of groups, not rows. The fit is the collapsed sampler's, identical to
        ``Model(formula, data).fit()`` on the same rows. What needs the rows themselves
        (simulation, prior predictive checks, pointwise log-likelihood) is refused.

        Examples
        --------
        >>> model = ml.Model.from_chunks("y ~ x + (1 + x | g)", "big.parquet")  # doctest: +SKIP
        >>> fit = model.fit(seed=1)  # doctest: +SKIP
        """
        from multilevel.chunked import chunked_statistics

        parsed = parse_formula(formula)
        check_category_specific(parsed, FAMILIES["gaussian"])
        if parsed.se is not None or parsed.has_additions:
            raise MultilevelError(
                "Addition terms (`| se()`, `weights()`, `rate()`, `cens()`, `trunc()`, "
                "`offset()`) need the data's rows: build the model with "
                "ml.Model(formula, data), not from chunked statistics."
            )
        summary, stats = chunked_statistics(formula, source, "gaussian", chunk_rows, progress)
        model = cls.__new__(cls)
        model._centered_choice = None  # one grouping factor: nothing is sampled centred
        flags = (False,) * len(summary.blocks)
        model._dpar_specs = {}
        model._setup(formula, parsed, summary, "gaussian", "identity", priors, flags)
        model.data = None
        model._stats = stats
        model.missing = missing_values.MissingData("error")
        return model

    def _setup(
        self, formula, parsed, design, family, link, priors, centered_terms, imputed=(),
        centring_weights=None,
    ):  # fmt: skip
        """Spec and structure from a design (rows) or a chunked ``DataSummary``.
        ``centring_weights``: per term, how far its centred coefficients are centred
        (``centring.term_weights``; None: fully)."""
        family_obj, _ = get_family(family, link)
        # known standard errors (`y | se(s) ~ ...`) replace the gaussian family's sigma;
        # parameters with a formula or a fixed value are not sampled as one number
        # unless `se(s, sigma = TRUE)` keeps a residual sd beside them
        aux = () if parsed.se is not None and not parsed.se_sigma else family_obj.aux
        aux = tuple(a for a in aux if a not in self._dpar_specs)
        self.design = design
        linked = linked_ids(design)
        nested = centring.nested_in(design, centered_terms)
        weights = centring_weights or ((),) * len(design.blocks)
        terms = tuple(
            _term_spec(
                b, linked, centered=c, nested_in=on, level_predictors=level, centring_weights=w
            )
            for b, c, on, level, w in zip(
                design.blocks,
                centered_terms,
                nested,
                centring.level_predictors(design, centered_terms, nested),
                weights,
            )
        )
        defaults = default_priors(design, terms, family, aux, link=link)
        own_terms, own_defaults, classes, dpars = _dpar_parts(
            design, family, self._dpar_specs, linked
        )
        terms = link_terms(terms + own_terms)  # refuses IDs that cannot link
        defaults.update(own_defaults)
        defaults.update(linked_defaults(linked_sets(terms)))
        levels = getattr(design, "response_levels", None)
        if family_obj.ordinal:  # thresholds Intercept[k], of class Intercept, come first
            names = threshold_names(levels)
            defaults = {**threshold_defaults(names), **defaults}
            defaults = with_category_specific_defaults(defaults, design, family, len(names))
            classes = {**classes, **{name: "Intercept" for name in names}}
        self.default_priors = dict(defaults)  # before the user's: prior checks' "moderate" values
        resolved, sources = resolve_priors(defaults, priors, terms, classes)
        for name in defaults:
            if name.startswith("Intercept[") and sources[name] == DEFAULT:
                sources[name] = "default (brms' for thresholds; not scaled)"
        columns = design.columns + tuple(c for d in getattr(design, "dpars", ()) for c in d.names)
        self.spec = ModelSpec(
            formula=formula,
            family=family,
            link=link,
            response=parsed.count_response if family_obj.multivariate_response else parsed.response,
            trials=parsed.trials,
            columns=columns,
            terms=terms,
            aux=aux,
            priors=tuple(resolved.items()),
            prior_sources=tuple(sources.items()),
            centered=any(centered_terms),
            imputed=imputed,
            se=parsed.se,
            se_sigma=parsed.se_sigma,
            response_levels=levels,
            dpars=tuple(dpars),
            cs_columns=getattr(design, "cs_columns", ()),
        )
        self.structure = backend.structure_of(self.spec)
        self._stats: dict | None = None  # sufficient statistics, for the collapsed sampler
        self._plan: gaussian_collapsed.Plan | str | None = None  # which effects to integrate
        self._weights: np.ndarray | None = None  # per-row likelihood weights (K-fold refits)
        self._pattern_cache: dict = {}  # limit -> covariate patterns (shared by clones)

    @property
    def centered_choice(self) -> bool | None:
        """The ``centered`` this model was built with: True or False for every term, None
        where the data chose term by term. A model rebuilt from its recipe (SBC's worker
        processes) passes this, so it samples as the original does."""
        return self._centered_choice

    @property
    def in_memory(self) -> bool:
        """False for a model built by ``from_chunks``: it knows statistics, not rows."""
        return self.data is not None

    def _require_rows(self, what: str) -> None:
        if not self.in_memory:
            raise MultilevelError(
                f"{what} needs the data's rows, and this model was built from chunked "
                "statistics (Model.from_chunks). Load the rows as a pandas DataFrame and "
                "use ml.Model(formula, data) for it."
            )

    def _require_complete(self, what: str) -> None:
        if self.spec.imputed:
            raise MultilevelError(
                f"{what} needs every predictor known, and this model samples the missing "
                f"values of {', '.join(i.column for i in self.spec.imputed)} "
                "(missing='model'). Use a model of the complete rows (missing='drop')."
            )

    def describe(self) -> None:
        """Print every parameter, its prior and where the prior came from."""
        print(self.spec.describe())

    def __repr__(self) -> str:
        return self.spec.describe()

    def model_args(self, with_response: bool = True) -> tuple[dict, dict]:
        """(data, prior) arrays: the arguments of the NumPyro model function."""
        self._require_rows("The row-wise model")
        data = backend.data_arrays(
            self.design, with_response, imputed=self.spec.imputed, st=self.structure
        )
        return data, backend.prior_arrays(self.spec)

    def numpyro_model(self):
        """The plain NumPyro model function; call it as ``model(*self.model_args())``."""
        return backend.make_model(self.structure)

    def with_response(self, y) -> Model:
        """The same model (same priors, same design) with another response vector.

        Used to refit simulated data: the priors stay those of this model rather than
        being re-scaled to the new response, and the compiled sampler is reused. ``y`` is
        coded as the model codes it (``Model.draw``'s ``"y"``): 0/1 for a bernoulli
        response stored as text, categories 0..K-1 for an ordinal one."""
        self._require_rows("with_response")
        self._require_complete("Refitting a simulated response")
        y = np.asarray(y)
        if y.shape != self.design.y.shape:
            raise MultilevelError(
                f"The new response has shape {y.shape}; this model's data has {self.design.y.shape}."
            )
        family, _ = get_family(self.spec.family, self.spec.link)
        # a multinomial response is checked column by column (its categories' names)
        names = self.spec.response_levels if family.multivariate_response else self.spec.response
        family.check(y, self.design.trials, names)
        clone = copy.copy(self)
        clone.design = dataclasses.replace(self.design, y=y.astype(float))
        clone._stats = None  # they depend on the response
        return clone

    def draw(
        self, n: int = 1, seed: int = 0, params: dict | None = None, per_draw: bool = False
    ) -> dict:
        """Draw parameters and a response from the model: from the priors, or with the
        parameters fixed to ``params`` (user-facing names; group effects optional).
        ``per_draw=True`` takes ``n`` values of each parameter, one set per draw.

        Returns user-facing parameter draws, each of shape (n, ...), and ``"y"`` of
        shape (n, rows). The simulation is compiled once per model structure and ``n``."""
        check_seed(seed)
        data, prior = self.model_args(with_response=False)
        fixed = None
        if params is not None and per_draw:
            sets = [
                backend.site_values(
                    self.spec,
                    prior,
                    {k: np.asarray(v)[i] for k, v in params.items()},
                    data.get("parents"),
                    data.get("level_values"),
                )
                for i in range(n)
            ]
            fixed = {k: np.stack([s[k] for s in sets]) for k in sets[0]}
        elif params is not None:
            sites = backend.site_values(
                self.spec, prior, params, data.get("parents"), data.get("level_values")
            )
            fixed = {k: np.broadcast_to(v, (n, *v.shape)) for k, v in sites.items()}
        simulate = backend.simulator(self.structure, n)
        raw = {**(fixed or {}), **simulate(prng_key(seed), fixed, data, prior)}
        raw = {k: np.asarray(v)[None] for k, v in raw.items()}  # a "chain" dim for naming
        named, _, _ = backend.named_posterior(self.spec, raw)
        out = {k: v[0] for k, v in named.items()}
        out["y"] = raw["y"][0]
        if {"lower", "upper"} & set(getattr(self.design, "bounds", {})):
            check_truncated_draws(out["y"])  # trunc(): rows rejection could not place
        return out

    def sample_prior_predictive(self, n: int = 500, seed: int = 0, plausible=None):
        """Prior predictive check: ``n`` data sets simulated from the priors, compared
        with the observed outcome; warns (``PriorPredictiveWarning``), naming the prior
        that drives it, when most simulated outcomes are implausible. ``plausible=(lo,
        hi)`` overrides the default plausible range. Returns a ``PriorPredictiveCheck``
        (``.summary``, ``.warnings``, ``.plot()``); see ``multilevel.prior_check``.
        """
        check_seed(seed)
        return prior_predictive_check(self, n=n, seed=seed, plausible=plausible)

    def simulate(
        self,
        params: dict | None = None,
        seed: int = 0,
        n_groups: int | None = None,
        rows_per_group: int | None = None,
    ) -> pd.DataFrame:
        """Simulate a data set: this model's design with a response drawn from known values.

        Parameters
        ----------
        params : dict, optional
            Parameter values by the names a fit reports: every hyper-parameter
            (``model.spec.hyper_names``: population effects, ``sd(...)``, ``cor(...)``,
            ``sigma``) is required; group effects (``"Intercept|g"``, a Series indexed by
            level or an array over ``model.spec.terms[k].levels``) are optional and drawn
            from their population distribution when left out. ``None`` draws every
            parameter once from the priors. Unknown or missing names raise
            ``MultilevelError`` listing the names expected.
        seed : int
            The same seed gives the same frame.
        n_groups, rows_per_group : int, optional
            Simulate on a new design instead (single grouping factor only): ``n_groups``
            new groups ``g001``, ``g002``, ... (default: as many as the data has), each
            with ``rows_per_group`` rows (default: all rows of its donor) resampled with
            the seed from one randomly chosen original group. The new model keeps this
            model's priors; group effects in ``params`` belong to the old groups and are
            not used: the new groups' effects are drawn.

        Returns
        -------
        pandas.DataFrame
            The data columns the formula uses (covariates, grouping factors, trials) with
            the simulated response in the response column (whole numbers for count and
            0/1 families). ``df.attrs["truth"]`` holds the values used: hyper-parameters
            as floats and each group effect as a Series indexed by level.

        Examples
        --------
        >>> import multilevel as ml
        >>> cafe = ml.datasets.load("cafe")
        >>> model = ml.Model("wait ~ afternoon + (1 + afternoon | cafe)", cafe)
        >>> df = model.simulate(cafe.attrs["truth"], seed=1)
        >>> df.attrs["truth"]["cor(Intercept,afternoon|cafe)"]
        -0.7
        >>> big = model.simulate(cafe.attrs["truth"], seed=1, n_groups=30, rows_per_group=7)
        >>> big.shape, big["cafe"].nunique()
        ((210, 3), 30)
        >>> fit = model.with_response(df["wait"]).fit(seed=1)  # doctest: +SKIP
        """
        self._require_rows("Simulation")
        self._require_complete("Simulation")
        check_seed(seed)
        return simulate(self, params, seed=seed, n_groups=n_groups, rows_per_group=rows_per_group)

    def fit(
        self,
        # the defaults' one home: options.FIT_DEFAULTS (the CLI's help shows them from there)
        chains: int = FIT_DEFAULTS["chains"],
        warmup: int = FIT_DEFAULTS["warmup"],
        draws: int = FIT_DEFAULTS["draws"],
        seed: int = FIT_DEFAULTS["seed"],
        target_accept: float = FIT_DEFAULTS["target_accept"],
        max_tree_depth: int = FIT_DEFAULTS["max_tree_depth"],
        progress: bool = True,
        warn: bool = True,
        method: str = FIT_DEFAULTS["method"],
        log_likelihood: bool | None = None,
        shard_rows: bool | None = None,
        chain_processes: bool | None = None,
    ) -> Fit:
        """Sample the posterior with NUTS, chains side by side, one per core.

        ``method="auto"`` integrates group effects out whenever that is exact and possible
        (gaussian family): with one grouping factor NUTS then runs over population
        effects, sds, correlations and sigma only, at a cost per gradient independent of
        the number of rows; with several (crossed or nested) the factor with the most
        levels is integrated out and the others are sampled. The integrated effects are
        drawn exactly afterwards, one draw per posterior draw. Where every one of several
        grouping factors' terms has one covariate (crossed or nested intercepts) it runs
        the blocked Gibbs sampler instead (``method="gibbs"``): the population effects
        with each factor's effects (and those nested in it) in exact Gaussian blocks,
        sigma and the sds by slice sampling; exact MCMC, no gradients, about 5x
        InstEval's NUTS speed at a higher ESS.
        ``method="nuts"`` forces the joint sampler, ``"collapsed"`` insists on the
        collapsed one, ``"gibbs"`` on the Gibbs sampler.
        ``method="laplace"`` (never chosen by ``"auto"``) integrates the group effects of
        a bernoulli, binomial (logit) or poisson (log) model with one group term out
        approximately: NUTS runs over the population effects, sds and correlations with
        each group's effects replaced by a Laplace approximation (Newton's method per
        group; Margossian et al. 2020), and the effects are drawn from that Gaussian
        afterwards. Its accuracy is measured per fit: PSIS k-hat of the draws' importance
        weights against the joint posterior, in ``fit.info["laplace"]`` and the printed
        method (below 0.5 good, 0.5-0.7 fair, above 0.7 poor: a ``ConvergenceWarning``
        says to refit with ``method="nuts"``). Groups with tens of rows or more make it
        accurate; with a few rows per group prefer the exact samplers.
        The printed fit says which ran. The same ``seed`` gives identical draws.
        Convergence problems are reported as ``ConvergenceWarning`` with advice
        (``warn=False`` keeps them in ``fit.diagnostics`` only).
        The pointwise log-likelihood (every row under every draw, for ``fit.loo()``,
        ``fit.waic()``, ``ml.compare``) is stored in ``fit.idata.log_likelihood`` when it
        is at most 1e7 values (``log_likelihood=None``), else computed when asked and by
        ``fit.save``; ``True``/``False`` override that, and ``fit.info["log_likelihood"]``
        says what was done.
        ``shard_rows``: the joint sampler splits each chain's rows across the devices of
        its kind (CPU devices, GPUs, hosts: docs/several_devices.md) when there are fewer
        chains than devices and the data are large (None, the default), always (True)
        or never (False); ``fit.info["device"]`` says what ran.
        ``chain_processes``: the joint sampler runs its chains in worker processes, one
        per core and pinned to it, instead of threads in this process: for large data
        on CPU cores (None, the default; 3x faster sampling for 200,000 bernoulli rows
        on 2 cores, alike at 20,000), always (True) or never (False);
        ``fit.info["timing"]["chain_processes"]`` says how many ran.
        """
        check_sampler_options(
            chains=chains, warmup=warmup, draws=draws, seed=seed,
            target_accept=target_accept, max_tree_depth=max_tree_depth,
        )  # fmt: skip
        row_sharding.check_shard_rows(shard_rows)
        chain_processes_module.check_option(chain_processes)
        settings = nuts.NutsSettings(chains, warmup, draws, target_accept, max_tree_depth)
        import_in_background()  # the draws' InferenceData needs ArviZ: import it meanwhile
        keep_ll, ll_note = loglik.log_likelihood_plan(
            self.in_memory, self.design.n, chains * draws, log_likelihood
        )
        chosen = self._collapse_plan(method)
        if method == "auto" and self._gibbs_applies(chosen):
            method = "gibbs"
        laplace_report = None
        if method == "laplace":
            _joint_sampler_only(
                "shard_rows", shard_rows, "uses method='laplace', which does not split rows"
            )
            _joint_sampler_only(
                "chain_processes", chain_processes, "uses method='laplace', its own sampler"
            )
            result, laplace_report, device = self._laplace_sample(settings, seed, progress)
            method_name = laplace_sampler.method_name(laplace_report["k_hat"])
        elif method == "gibbs":
            _joint_sampler_only("shard_rows", shard_rows, "uses method='gibbs', its own sampler")
            _joint_sampler_only(
                "chain_processes", chain_processes, "uses method='gibbs', its own sampler"
            )
            result, device = self._gibbs_sample(settings, seed, progress)
            method_name = gibbs.method_name()
        elif chosen is not None:
            _joint_sampler_only(
                "shard_rows",
                shard_rows,
                "integrates group effects out and reads per-group sums, not rows "
                "(method='nuts' samples the rows)",
            )
            _joint_sampler_only(
                "chain_processes",
                chain_processes,
                "integrates group effects out (method='nuts' runs the joint sampler)",
            )
            stats = self._sufficient_statistics(chosen)
            # padded to the size bucket: data of another size in it reuse the program
            run_st = padding.padded_structure(self.structure)
            with placement.placed(placement.work_of(stats)) as device:
                result = collapsed.sample(
                    run_st, chosen, padding.pad_statistics(self.structure, stats),
                    backend.prior_arrays(self.spec), settings, seed, progress,
                )  # fmt: skip
            result.samples = padding.unpad(result.samples, self.structure)
            method_name = collapsed.method_name(chosen)
        else:
            st, data, note = self._joint_inputs()
            # chains start at the pooled GLM's estimate; float64 for huge counts; the
            # mass matrix unregularised for very narrow posteriors (backends.start)
            prior = backend.prior_arrays(self.spec)
            begin = start.plan(self.spec, st, data, prior, chains, seed, warmup)
            run_st, args, points = st, begin.model_args, begin.points
            work = placement.work_of(data)
            with placement.placed(work) as device, begin.precision():
                shards = None
                if padding.paddable(st):  # rows and groups padded to their size bucket
                    # (in the sampler's precision: a float64 start's arrays stay float64)
                    shards = row_sharding.plan(work, chains, shard_rows)
                    rows_divide = 1 if shards is None else shards.devices
                    run_st = padding.padded_structure(st)
                    args = (padding.pad_data(st, args[0], multiple=rows_divide), args[1])
                    points = padding.pad_points(points, st)
                else:
                    _joint_sampler_only(
                        "shard_rows", shard_rows, "samples missing predictor values"
                    )
                if shards is not None:  # each chain's rows split across devices
                    args, device = shards.placed(args, padding.ROW_KEYS), shards.label
                    _joint_sampler_only(
                        "chain_processes",
                        chain_processes,
                        "splits each chain's rows across devices",
                    )
                    workers = 0
                else:
                    workers = chain_processes_module.planned(work, chains, chain_processes)
                options = dict(
                    seed=seed,
                    dense_blocks=run_st.joint_dense_blocks,
                    progress=progress,
                    start=points,
                    regularize_mass=begin.regularize_mass,
                    # from the curvature where every site starts near the typical set
                    # (the pooled GLM's and each group's estimate): a bernoulli
                    # (1 + x | g) of 20,000 rows ran its first 100 warmup draws at 265
                    # gradients each from the identity, at 18 from this (precondition)
                    start_mass="curvature" if begin.complete else "identity",
                    quick_init=True,  # compile.run_once_options
                )
                # every gradient passes over the rows: XLA's faster row passes where
                # they repay their compile (a function of the padded data's shapes)
                with row_pass_options(placement.work_of(args[0])):
                    if workers:
                        result = chain_processes_module.sample(
                            functools.partial(backend.make_model, run_st),
                            run_st, args, settings, workers=workers, **options,
                        )  # fmt: skip
                    else:
                        result = nuts.sample(
                            run_st, backend.make_model(run_st), args, settings,
                            sharding=shards, **options,
                        )  # fmt: skip
            result.samples = padding.unpad(result.samples, st)
            notes = "; ".join(n for n in (note, begin.note) if n)
            method_name = "NUTS" + (f" ({notes})" if notes else "")
        info = {**self._info(result, seed, method_name), "log_likelihood": ll_note}
        info["device"] = device
        info["missing"] = str(self.missing)
        info["sampler"] = "gibbs" if method == "gibbs" else "nuts"  # what the diagnostics mean
        if laplace_report is not None:
            info["laplace"] = laplace_report
        idata = self._inference_data(result)
        if keep_ll:
            loglik.add_log_likelihood(idata, self.spec, self.design)
        fit = Fit(idata, self.spec, info, model=self)
        if self.missing.unobserved is not None and self._weights is None:  # not for K-fold
            add_predicted_responses(fit, self.missing.unobserved, seed)
        if not fit.diagnostics.converged:  # causes in the data, kept with the saved fit
            fit.info["hints"] = list(diag.suspects(self.design, self.spec))
        if warn:
            diag.warn(fit.diagnostics, self.spec.centered, tuple(fit.info.get("hints", ())))
            if laplace_report is not None:
                diag.warn_laplace(laplace_report["k_hat"], laplace_report["newton_converged"])
        return fit

    def _gibbs_applies(self, chosen: gaussian_collapsed.Plan | None) -> bool:
        """Whether ``method="auto"`` runs the Gibbs sampler: a gaussian model with
        several grouping factors (where only one factor's effects can be integrated
        out), each term with one covariate. InstEval, 4 x 1000 + 1000: min bulk ESS
        1,989 in a 16.5 s fit, against 1,210 in 117.6 s for the partially collapsed
        NUTS; Penicillin 2,460 in 0.5 s of sampling against 730 in 2.1 s. A model
        built with ``centered=True`` or ``False`` keeps the NUTS sampler that choice is
        about."""
        return (
            chosen is not None
            and not chosen.by_statistics
            and self.in_memory
            and self._centered_choice is None  # centred or not: a choice NUTS makes
            and gaussian_gibbs.unsupported(self.design, self.structure) is None
        )

    def _gibbs_sample(self, settings: nuts.NutsSettings, seed: int, progress: bool):
        """``method="gibbs"``: (result, device). Where every collapsed sampler applies
        and each group term has one covariate (``gaussian_gibbs.unsupported``)."""
        self._require_rows("The Gibbs sampler (method='gibbs')")
        self._collapse_plan("auto")  # decides self._plan, or the reason it cannot be
        reason = self._plan if isinstance(self._plan, str) else None
        reason = reason or gaussian_gibbs.unsupported(self.design, self.structure)
        if reason:
            raise MultilevelError(
                f"method='gibbs' does not apply to this model: {reason}. Use method='auto'."
            )
        chosen = gaussian_gibbs.layout(self.design, self.structure)
        data = gaussian_gibbs.data_arrays(self.design, chosen, weights=self._weights)
        # padded to the size bucket: data of another size in it reuse the program
        run_st = padding.padded_structure(self.structure)
        with placement.placed(placement.work_of(data)) as device:
            result = gibbs.sample(
                run_st, chosen, data, backend.prior_arrays(self.spec), settings, seed, progress
            )
        result.samples = padding.unpad(result.samples, self.structure)
        return result, device

    def _laplace_sample(self, settings: nuts.NutsSettings, seed: int, progress: bool):
        """``method="laplace"``: (result, accuracy report, device). The joint sampler's
        data (pooled rows where they pool) and chains' start (its population effects and
        sds; the group effects are not sampled)."""
        reason = laplace.unsupported(self.spec, self.design)  # (chunked models: gaussian)
        if reason is not None:
            raise MultilevelError(
                f"method='laplace' does not apply to this model: {reason}. Use "
                "method='nuts', which samples every group effect exactly."
            )
        st, data, note = self._joint_inputs()
        prior = backend.prior_arrays(self.spec)
        begin = start.plan(self.spec, st, data, prior, settings.chains, seed, settings.warmup)
        # groups padded to their bucket (padded groups have no rows); the rows' slots are
        # padded by laplace.prepare
        run_st = padding.padded_structure(st)
        with placement.placed(placement.work_of(data)) as device:
            result, report = laplace_sampler.sample(
                run_st, data, prior, settings, seed, progress, begin.points, begin.regularize_mass,
                begin.float64,
            )  # fmt: skip
        result.samples = padding.unpad(result.samples, st)
        if note:
            report["note"] = note
        return result, report, device

    def _joint_inputs(self) -> tuple[backend.Structure, dict, str | None]:
        """Structure and data for the joint sampler: discrete rows that share every
        covariate and group are pooled into one likelihood term (same posterior)."""
        self._require_rows("The joint sampler (method='nuts')")
        if self._weights is not None:  # K-fold refits: rows not pooled, shapes as every fold's
            data = backend.data_arrays(
                self.design, weight=self._weights, imputed=self.spec.imputed, st=self.structure
            )
            return self.structure, data, None
        if self.spec.imputed or self.spec.predicted_dpars or self.design.has_additions:
            # rows differ by their sampled predictor values, by a family parameter's
            # predictors, or by their offsets, weights and bounds: not pooled
            return self.structure, self.model_args()[0], None
        pooled = aggregate.aggregated_model_inputs(
            self.structure, self.design, self.spec.family, self.spec.link, self._patterns
        )
        if pooled is None:
            return self.structure, self.model_args()[0], None
        return pooled

    def _patterns(self, design, limit):
        """``aggregate.covariate_patterns``, found once per model: they depend on the
        covariates and groups only, so refits of simulated responses (``with_response``
        clones share this cache) skip the pass over the rows (0.2 s at 1M rows)."""
        if limit not in self._pattern_cache:
            self._pattern_cache[limit] = aggregate.covariate_patterns(design, limit)
        return self._pattern_cache[limit]

    def _collapse_plan(self, method: str) -> gaussian_collapsed.Plan | None:
        """The collapsed sampler's plan, or None for the joint sampler."""
        check_method(method)
        if self._plan is None:
            # Decided once per model: the centring rule reads the response, and refits of
            # simulated responses (with_response, K-fold weights) must keep one program.
            if self.spec.imputed:
                self._plan = "predictors with missing values are sampled (missing='model')"
            elif getattr(self.design, "has_additions", False):
                self._plan = (
                    "offsets, weights, censoring or truncation make each row's likelihood its "
                    "own: the joint sampler samples every effect"
                )
            elif self.spec.se_sigma:
                self._plan = "se(s, sigma = TRUE) adds sigma to each row's known sd"
            elif self.spec.dpars:
                self._plan = (
                    f"{', '.join(d.name for d in self.spec.dpars)} has a formula or value of "
                    "its own (ml.bf): the joint sampler samples every effect"
                )
            else:
                self._plan = gaussian_collapsed.plan(
                    self.design, self.spec.family, self._centered_choice
                )
        chosen = self._plan
        if method == "collapsed" and isinstance(chosen, str):
            raise MultilevelError(f"method='collapsed' does not apply here: {chosen}.")
        if method in ("nuts", "laplace") or isinstance(chosen, str):
            return None
        return chosen

    def _sufficient_statistics(self, chosen: gaussian_collapsed.Plan) -> dict:
        # One pass over the rows, kept: refits (e.g. of another seed) reuse it.
        if self._stats is None:
            self._stats = gaussian_collapsed.sufficient_statistics(
                self.design, chosen, weights=self._weights
            )
        return self._stats

    def with_weights(self, weights) -> Model:
        """This model with per-row likelihood weights (0 leaves a row out, 1 keeps it).
        Every array keeps its shape, so K-fold refits (``ml.kfold``) reuse the compiled
        sampler."""
        self._require_rows("Row weights (K-fold cross-validation)")
        weights = np.asarray(weights, dtype=float)
        if weights.shape != (self.design.n,) or (weights < 0).any():
            raise MultilevelError(f"Row weights must be {self.design.n} values >= 0.")
        clone = copy.copy(self)
        clone._weights, clone._stats = weights, None
        return clone

    def _inference_data(self, result: nuts.NutsResult):
        posterior, dims, coords = backend.named_posterior(self.spec, result.samples)
        stats = dict(result.stats)
        stats["lp"] = -stats.pop("potential_energy")
        stats["tree_depth"] = np.floor(np.log2(np.maximum(stats["n_steps"], 1))).astype(int) + 1
        if not self.in_memory:  # chunked statistics: there are no rows to store
            return az.from_dict(posterior=posterior, sample_stats=stats, coords=coords, dims=dims)
        observed, obs_dims = {"obs": np.arange(self.design.n)}, ["obs"]
        if self.design.y.ndim == 2:  # a multinomial's counts: one column per category
            observed["category"], obs_dims = list(self.spec.response_levels), ["obs", "category"]
        return az.from_dict(
            posterior=posterior,
            sample_stats=stats,
            observed_data={self.spec.response: self.design.y},
            coords={**coords, **observed},
            dims={**dims, self.spec.response: obs_dims},
        )

    def _info(self, result: nuts.NutsResult, seed: int, method: str) -> dict:
        s = result.settings
        return {
            "method": method,
            "n_rows": int(self.design.n),
            "seed": int(seed),
            "settings": {
                "chains": s.chains,
                "warmup": s.warmup,
                "draws": s.draws,
                "target_accept": s.target_accept,
                "max_tree_depth": s.max_tree_depth,
            },
            "timing": result.timing(),  # with warmup's and sampling's gradients and seconds
        }


# What each option that only the joint sampler takes does, for ``_joint_sampler_only``.
JOINT_SAMPLER_OPTIONS = {
    "shard_rows": "splits the joint sampler's rows across devices",
    "chain_processes": "runs the joint sampler's chains in worker processes",
}


def _joint_sampler_only(option: str, value: bool | None, because: str) -> None:
    """``option=True`` where this fit cannot do what it asks: say why."""
    if value:
        raise OptionError(
            f"{option}=True {JOINT_SAMPLER_OPTIONS[option]}, but this fit {because}: "
            f"leave {option} unset."
        )


def _check_centring_applies(design, choice) -> None:
    """``centered=True`` centres the mean's group terms; refused where the model has
    none and its group terms are all in family parameters' or categories' formulas,
    which are sampled non-centred (it would change nothing)."""
    own = [b.group for d in getattr(design, "dpars", ()) for b in d.blocks]
    if choice is True and not design.blocks and own:
        raise MultilevelError(
            "centered=True centres the group terms of the mean's formula, and this model "
            f"has none: its group terms ({', '.join(dict.fromkeys(own))}) are in the "
            "formulas of family parameters or categories, which are sampled non-centred. "
            "Pass centered=None (the default) or False."
        )


def _uncentred_if_linked(design, flags: tuple[bool, ...], choice) -> tuple[bool, ...]:
    """Linked terms (``|p|``) are sampled non-centred: their effects are drawn jointly
    with other parameters' as scaled standard normals. Refuses an explicit request to
    centre one."""
    linked = linked_ids(design)
    out = list(flags)
    for k, block in enumerate(design.blocks):
        if out[k] and (block.group, block.term.id) in linked:
            if choice is not None:
                raise MultilevelError(
                    f"The effects of ({block.term.expr} |{block.term.id}| {block.group}) are "
                    "correlated with other parameters' (brms' ID syntax) and are sampled "
                    "non-centred; pass centered=False or None."
                )
            out[k] = False
    return tuple(out)


def linked_ids(design) -> set[tuple[str, str]]:
    """(group, ID) of the terms that brms IDs (``|p|``) link across the formulas of the
    mean and of family parameters (or categories)."""
    blocks = [*design.blocks, *(b for d in getattr(design, "dpars", ()) for b in d.blocks)]
    return shared_ids((b.group, b.term.id) for b in blocks)


def _term_spec(block, linked: set, **placement) -> TermSpec:
    """The ``TermSpec`` of a design's group block; its brms ID kept only where it links
    terms (``linked_ids``). ``placement``: ``centered``, ``nested_in``,
    ``level_predictors`` or ``dpar``."""
    term = block.term
    keep = (block.group, term.id) in linked
    return TermSpec(
        block.group, term.factors, term.expr, block.coefs, term.correlated, block.levels,
        id=term.id if keep else "", **placement,
    )  # fmt: skip


def _dpar_parts(design, family: str, dpar_specs: dict, linked: set):
    """The spec's parts for family parameters with a formula (their group terms, default
    priors, prior classes, ``DparSpec``) or a fixed value (a ``DparSpec``).
    ``dpar_specs``: name -> (right-hand side, None) or ("", value); ``linked``: the
    (group, ID) pairs of linked terms (``linked_ids``)."""
    terms, defaults, classes, dpars = (), {}, {}, []
    for dpar_design in getattr(design, "dpars", ()):
        name = dpar_design.name
        own = tuple(_term_spec(b, linked, dpar=name) for b in dpar_design.blocks)
        terms += own
        defaults.update(dpar_defaults(dpar_design, own, dpar_centre(name, design, family)))
        classes.update(dpar_classes(name, dpar_design.names, own))
        dpars.append(DparSpec(name, dpar_link(name), dpar_specs[name][0], dpar_design.names))
    for name, (_, value) in dpar_specs.items():
        if value is not None:
            dpars.append(DparSpec(name, dpar_link(name), value=value))
    return terms, defaults, classes, dpars
