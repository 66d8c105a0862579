"""Response families: which links they take, how their response is checked, their likelihood."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import ndtr

from multilevel.errors import DataError


@dataclass(frozen=True)
class Family:
    """A response distribution with its links and auxiliary parameters.

    ``aux`` names the family's own parameters besides the linear predictor (``sigma``
    for gaussian); they get priors of class ``aux[i]`` and appear under that name.
    """

    name: str
    links: tuple[str, ...]
    aux: tuple[str, ...]
    check: Callable[[np.ndarray, np.ndarray | None, str], None]
    needs_trials: bool = False

    def likelihood(
        self, eta: jnp.ndarray, link: str, aux: dict, trials: jnp.ndarray | None
    ) -> dist.Distribution:
        """The observation distribution given the linear predictor ``eta``."""
        return _LIKELIHOODS[(self.name, link)](eta, aux, trials)


def _as_numeric(y: np.ndarray, column: str, family: str) -> np.ndarray:
    if y.dtype == bool:
        return y.astype(float)
    if not np.issubdtype(y.dtype, np.number):
        raise DataError(
            f"The response `{column}` holds {y.dtype} values, but the {family} family "
            "needs numbers. Convert the column (e.g. pd.to_numeric) or pick another family."
        )
    return y.astype(float)


def _integer_rows(y: np.ndarray) -> np.ndarray:
    return np.flatnonzero(y != np.round(y))


def _check_gaussian(y, trials, column):
    _as_numeric(y, column, "gaussian")


def _check_bernoulli(y, trials, column):
    values = _as_numeric(y, column, "bernoulli")
    bad = np.flatnonzero((values != 0) & (values != 1))
    if bad.size:
        raise DataError(
            f"The bernoulli family needs `{column}` to be 0/1 (or True/False), but "
            f"{bad.size} rows hold other values (e.g. {values[bad[0]]:g} in row {bad[0]}). "
            "For counts out of a total use `successes | trials(n) ~ ...` with "
            "family='binomial'."
        )


def _check_counts(values, column, family):
    negative = np.flatnonzero(values < 0)
    fractional = _integer_rows(values)
    if negative.size or fractional.size:
        rows = negative if negative.size else fractional
        kind = "negative" if negative.size else "non-integer"
        raise DataError(
            f"The {family} family needs non-negative whole-number counts in `{column}`, but "
            f"{rows.size} rows are {kind} (e.g. {values[rows[0]]:g} in row {rows[0]})."
        )


def _check_poisson(y, trials, column):
    _check_counts(_as_numeric(y, column, "poisson"), column, "poisson")


def _check_binomial(y, trials, column):
    values = _as_numeric(y, column, "binomial")
    _check_counts(values, column, "binomial")
    if trials is None:
        raise DataError(
            "The binomial family needs the number of trials: write the formula as "
            f"`{column} | trials(n) ~ ...` with `n` the column of totals."
        )
    over = np.flatnonzero(values > trials)
    if over.size:
        raise DataError(
            f"`{column}` exceeds the number of trials in {over.size} rows (e.g. row "
            f"{over[0]}: {values[over[0]]:g} successes out of {trials[over[0]]:g})."
        )


def check_trials(trials: np.ndarray, column: str) -> None:
    """Trials must be positive whole numbers."""
    values = _as_numeric(trials, column, "binomial")
    _check_counts(values, column, "binomial")
    if (values == 0).any():
        raise DataError(
            f"The trials column `{column}` is 0 in {(values == 0).sum()} rows; "
            "such rows carry no information. Remove them explicitly."
        )


FAMILIES: dict[str, Family] = {
    "gaussian": Family("gaussian", ("identity",), ("sigma",), _check_gaussian),
    "bernoulli": Family("bernoulli", ("logit", "probit"), (), _check_bernoulli),
    "binomial": Family("binomial", ("logit",), (), _check_binomial, needs_trials=True),
    "poisson": Family("poisson", ("log",), (), _check_poisson),
}


def _probit_probs(eta):
    # Keep probabilities strictly inside (0, 1) so the log-likelihood stays finite in float32.
    eps = jnp.finfo(eta.dtype).eps
    return jnp.clip(ndtr(eta), eps, 1 - eps)


_LIKELIHOODS = {
    ("gaussian", "identity"): lambda eta, aux, n: dist.Normal(eta, aux["sigma"]),
    ("bernoulli", "logit"): lambda eta, aux, n: dist.BernoulliLogits(eta),
    ("bernoulli", "probit"): lambda eta, aux, n: dist.BernoulliProbs(_probit_probs(eta)),
    ("binomial", "logit"): lambda eta, aux, n: dist.BinomialLogits(eta, total_count=n),
    # Internal: bernoulli-probit rows aggregated into binomial counts (backends.aggregate).
    # Not among FAMILIES["binomial"].links, so users cannot ask for it.
    ("binomial", "probit"): lambda eta, aux, n: dist.BinomialProbs(
        _probit_probs(eta), total_count=n
    ),
    ("poisson", "log"): lambda eta, aux, n: dist.Poisson(jnp.exp(eta)),
}


def get_family(name: str, link: str | None = None) -> tuple[Family, str]:
    """Look up a family and resolve its link (the first listed is the default)."""
    if name not in FAMILIES:
        raise DataError(f"Unknown family {name!r}. Available: {', '.join(FAMILIES)}.")
    family = FAMILIES[name]
    link = link or family.links[0]
    if link not in family.links:
        raise DataError(
            f"The {name} family takes the link(s) {', '.join(family.links)}, not {link!r}."
        )
    return family, link
