"""Convergence diagnostics after every fit, each problem with advice a person can act on.

Two levels. ``Diagnostics.problems`` lists everything short of Vehtari et al.'s targets
(R-hat 1.01, 100 effective draws per chain, no divergences), each with what to try.
``Diagnostics.converged`` and ``verdict`` say whether the fit is usable at all: a fit
whose draws are mostly divergent, whose chains disagree (R-hat above 1.1), whose
effective sample size is under a tenth of its draws, or with a chain that never left its
start did not converge, and its estimates should not be read. The verdict comes first
wherever a user looks (``print(fit)``, the first warning of ``Model.fit``, the exit
status of ``multilevel fit``), with advice for the cause: ``suspects`` looks in the
data for the usual ones (a predictor far from zero, huge counts, an imputation model
that cannot identify a group-level covariate).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from multilevel.families import FAMILIES

# Thresholds from Vehtari et al. (2021), "Rank-normalization, folding, and localization".
RHAT_MAX = 1.01
ESS_PER_CHAIN = 100

# A fit did not converge (``Diagnostics.converged``) when any of these fails. Looser than
# the targets above: past them the estimates themselves are wrong, not merely noisy.
DIVERGENT_SHARE_MAX = 0.5  # divergent transitions in most draws
RHAT_FAIL = 1.1  # Gelman & Rubin's original rule of thumb
ESS_SHARE_MIN = 0.1  # bulk or tail ESS under a tenth of the draws
# A chain did not move from its start when nearly all its draws were a single leapfrog
# step that was rejected (divergent, or accepted with probability ~0): its draws are then
# copies of its initial point.
FROZEN_SHARE = 0.9
FROZEN_ACCEPTANCE = 0.01

# ``suspects``: a predictor whose mean is this many sds from zero is nearly collinear
# with the intercept (grouseticks' YEAR, 95-97: mean / sd = 120).
OFFSET_RATIO = 10.0
# Counts above this make a Poisson-type likelihood so sharp that group effects sampled
# non-centred, or a misfit of the mean, stall the sampler.
LARGE_COUNT = 10_000


class ConvergenceWarning(UserWarning):
    """The sampler reported a problem; the message says what to try."""


# method="laplace": Pareto k-hat of the importance weights of its draws against the
# joint posterior (Vehtari, Simpson, Gelman, Yao & Gabry 2024, "Pareto smoothed
# importance sampling"): below 0.5 the approximation is close, up to 0.7 importance
# sampling could still correct it, above 0.7 it cannot.
LAPLACE_K_GOOD = 0.5
LAPLACE_K_MAX = 0.7


@dataclass(frozen=True)
class Diagnostics:
    """Sampler diagnostics of a fit (``fit.diagnostics``).

    ``frozen_chains`` lists the chains (ArviZ's chain index, from 0) that never left
    their initial point; ``worst_r_hat`` and ``worst_ess`` name the parameter with the
    largest R-hat and with the smallest ESS."""

    divergences: int
    max_r_hat: float
    min_ess_bulk: float
    min_ess_tail: float
    tree_depth_saturated: int
    n_draws: int
    chains: int
    frozen_chains: tuple[int, ...] = ()
    worst_r_hat: str = ""
    worst_ess: str = ""

    @property
    def converged(self) -> bool:
        """False when the estimates should not be used (see ``failures``)."""
        return not self.failures()

    def failures(self) -> list[str]:
        """Each failed convergence criterion, in a few words; empty when converged."""
        out = []
        if self.frozen_chains:
            out.append(f"{_chains_text(self.frozen_chains)} did not move from the start")
        if self.divergences > DIVERGENT_SHARE_MAX * self.n_draws:
            out.append(f"{self.divergences} of {self.n_draws} draws divergent")
        if not self.max_r_hat <= RHAT_FAIL and not np.isnan(self.max_r_hat):
            name = f" ({self.worst_r_hat})" if self.worst_r_hat else ""
            out.append(f"R-hat {_number(self.max_r_hat)}{name} > {RHAT_FAIL}")
        ess = min(self.min_ess_bulk, self.min_ess_tail)
        if ess < ESS_SHARE_MIN * self.n_draws:
            kind = "bulk" if self.min_ess_bulk <= self.min_ess_tail else "tail"
            name = f" ({self.worst_ess})" if self.worst_ess else ""
            out.append(f"{kind} ESS {ess:.0f}{name} < {ESS_SHARE_MIN:.0%} of {self.n_draws} draws")
        return out

    def verdict(self, hints: tuple[str, ...] | list[str] = (), centered: bool = False) -> str:
        """'' for a converged fit; otherwise a first line saying that the fit did not
        converge and why, then one line of advice per cause. ``hints`` are causes found
        in the data (``suspects``); they come first, as the likeliest."""
        failures = self.failures()
        if not failures:
            return ""
        lines = ["The fit did NOT converge; do not use its estimates: " + "; ".join(failures) + "."]
        advice = list(hints)
        if self.frozen_chains:
            advice.append(self._frozen_advice())
        if not hints:
            advice += self._general_advice(centered)
        return "\n".join([lines[0], *(f"  - {a}" for a in advice)])

    def _frozen_advice(self) -> str:
        one = len(self.frozen_chains) == 1
        its, it = ("its", "it") if one else ("their", "they")
        return (
            f"{_chains_text(self.frozen_chains)} did not move from {its} start: nearly "
            f"every draw was one rejected leapfrog step, so {its} draws are copies of the "
            "initial values, mixed into the summary with the other chains' draws. The "
            f"log-density is extreme where {it} started: centre predictors that are far "
            "from zero, give priors that rule out absurd values, or refit with another seed."
        )

    def _general_advice(self, centered: bool) -> list[str]:
        out = []
        if self.divergences > DIVERGENT_SHARE_MAX * self.n_draws:
            other = "centered=False" if centered else "centered=True"
            out.append(
                "Most draws diverged: the posterior has regions the sampler cannot "
                f"enter. Try {other}, priors that rule out implausible values (e.g. "
                "priors={'sd': ml.HalfNormal(<largest plausible sd>)}), and centring "
                "predictors far from zero; target_accept=0.99 only helps a little."
            )
        if self.max_r_hat > RHAT_FAIL or min(self.min_ess_bulk, self.min_ess_tail) < (
            ESS_SHARE_MIN * self.n_draws
        ):
            out.append(
                "The chains disagree or barely move. Look at trace plots "
                "(az.plot_trace(fit.idata)); centre predictors far from zero; check that "
                "every parameter is identified (a predictor constant within groups beside "
                "a varying intercept, collinear columns, groups with one row). Running "
                "longer (warmup=2000, draws=2000) helps only a slowly mixing fit."
            )
        return out

    def problems(self, centered: bool) -> list[str]:
        """Plain-words description of each problem with what to try."""
        out = []
        if self.divergences:
            other = (
                "centered=False" if centered else "centered=True (when groups hold a lot of data)"
            )
            out.append(
                f"{self.divergences} of {self.n_draws} draws ended in a divergent transition, "
                "so the posterior may be biased. Try fit(target_accept=0.95); try "
                f"{other}; or give the group sds a lighter-tailed prior, e.g. "
                "priors={'sd': ml.HalfNormal(<about the largest plausible sd>)}."
            )
        if self.max_r_hat > RHAT_MAX:
            out.append(
                f"max R-hat is {self.max_r_hat:.3f} (> {RHAT_MAX}): the chains disagree. Run "
                "longer (warmup=2000, draws=2000) and look at trace plots; if it persists, "
                "the model may be poorly identified (check priors and group sizes)."
            )
        need = ESS_PER_CHAIN * self.chains
        if min(self.min_ess_bulk, self.min_ess_tail) < need:
            out.append(
                f"the smallest effective sample size is {min(self.min_ess_bulk, self.min_ess_tail):.0f} "
                f"(< {need}, i.e. {ESS_PER_CHAIN} per chain): estimates of means and "
                "quantiles are noisy. Draw more (e.g. draws=2000) or reparameterise "
                "(centered=True/False)."
            )
        if self.tree_depth_saturated:
            out.append(
                f"{self.tree_depth_saturated} draws hit the maximum tree depth: sampling is "
                "inefficient. Raise max_tree_depth (e.g. 12) or rescale predictors."
            )
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def _chains_text(chains: tuple[int, ...]) -> str:
    if len(chains) == 1:
        return f"chain {chains[0]}"
    return "chains " + ", ".join(map(str, chains[:-1])) + f" and {chains[-1]}"


def _number(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.1e}"


def compute(summary: pd.DataFrame, stats: dict, max_tree_depth: int) -> Diagnostics:
    """Diagnostics from a summary table and sampler statistics of shape (chains, draws):
    ``diverging`` and ``n_steps``, and ``acceptance_rate`` where given."""
    diverging = np.asarray(stats["diverging"])
    n_steps = np.asarray(stats["n_steps"])
    saturated = n_steps >= 2**max_tree_depth - 1
    rejected = diverging.astype(bool)
    if stats.get("acceptance_rate") is not None:
        rejected = rejected | (np.asarray(stats["acceptance_rate"]) < FROZEN_ACCEPTANCE)
    stuck = (n_steps <= 1) & rejected  # (chains, draws)
    frozen = tuple(int(c) for c in np.flatnonzero(stuck.mean(axis=1) >= FROZEN_SHARE))
    r_hat = summary["r_hat"]
    ess = summary[["ess_bulk", "ess_tail"]].min(axis=1)
    return Diagnostics(
        divergences=int(diverging.sum()),
        max_r_hat=float(r_hat.max()),
        min_ess_bulk=float(summary["ess_bulk"].min()),
        min_ess_tail=float(summary["ess_tail"].min()),
        tree_depth_saturated=int(saturated.sum()),
        n_draws=int(diverging.size),
        chains=int(diverging.shape[0]),
        frozen_chains=frozen,
        worst_r_hat=str(r_hat.idxmax()) if r_hat.notna().any() else "",
        worst_ess=str(ess.idxmin()) if ess.notna().any() else "",
    )


def warn(diagnostics: Diagnostics, centered: bool, hints: tuple[str, ...] = ()) -> None:
    """The verdict first (when the fit did not converge), then each problem."""
    verdict = diagnostics.verdict(hints, centered)
    if verdict:
        warnings.warn(verdict, ConvergenceWarning, stacklevel=3)
    for problem in diagnostics.problems(centered):
        warnings.warn(problem, ConvergenceWarning, stacklevel=3)


def laplace_verdict(k_hat: float) -> str:
    """The Laplace approximation's accuracy in plain words, from its PSIS k-hat."""
    if not np.isfinite(k_hat) or k_hat > LAPLACE_K_MAX:
        return 'the approximation is poor: refit with method="nuts"'
    if k_hat > LAPLACE_K_GOOD:
        return "fair"
    return "good"


def warn_laplace(k_hat: float, newton_converged: bool = True) -> None:
    """``ConvergenceWarning``s when the Laplace approximation is poor (k-hat > 0.7) or
    Newton's method did not reach some group's mode."""
    if not np.isfinite(k_hat) or k_hat > LAPLACE_K_MAX:
        warnings.warn(
            f"The Laplace approximation of the group effects is far from the joint "
            f"posterior (PSIS k-hat {k_hat:.2f} > {LAPLACE_K_MAX}): its estimates may be "
            'biased. Refit with method="nuts", which samples the group effects exactly.',
            ConvergenceWarning,
            stacklevel=3,
        )
    if not newton_converged:
        warnings.warn(
            "Newton's method did not reach every group's mode in some draws, so the "
            "Laplace approximation there is not the one intended (extreme groups, e.g. "
            'counts far above the population mean). Refit with method="nuts".',
            ConvergenceWarning,
            stacklevel=3,
        )


# ------------------------------------------------------------------------- suspects
def suspects(design, spec) -> tuple[str, ...]:
    """Causes of non-convergence visible in the data, each with what to do.

    ``design`` (``multilevel.design.Design``, or the ``chunked.DataSummary`` of
    ``Model.from_chunks``: its column means and sds only) and ``spec`` (``ModelSpec``)
    are read, not imported: this module sits below both."""
    X = getattr(design, "X", None)
    if X is None:  # chunked statistics: no rows, but each column's mean and sd
        moments = zip(design.columns, design.x_mean, design.x_sd)
        return tuple(h for h in (_offset_hint(n, m, s) for n, m, s in moments) if h)
    columns = {name: X[:, j] for j, name in enumerate(design.columns)}
    for block in design.blocks:
        for j, name in enumerate(block.coefs):
            columns.setdefault(name, block.Z[:, j])
    out = []
    for name, values in columns.items():
        values = np.asarray(values, dtype=float)
        if values.size < 2 or np.isin(values, (0.0, 1.0)).all():
            continue  # a dummy is near the intercept only when its reference level is rare
        hint = _offset_hint(name, values.mean(), values.std(), values.min(), values.max())
        if hint:
            out.append(hint)
    if FAMILIES[spec.family].counts:
        hint = _count_hint(spec, design)
        if hint:
            out.append(hint)
    for imp in getattr(spec, "imputed", ()):
        out += _imputation_hints(imp, design, spec)
    return tuple(out)


def _offset_hint(name: str, mean: float, sd: float, low=None, high=None) -> str:
    mean, sd = float(mean), float(sd)
    if name == "Intercept" or not sd > 0 or abs(mean) <= OFFSET_RATIO * sd:
        return ""
    digits = -int(np.round(np.log10(sd)))  # the centre to about the sd's precision
    centre = f"{round(mean, digits):.{max(digits, 0)}f}"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
        how = f"centre it, e.g. `I({name} - {centre})` or `center({name})`"
    else:
        how = f"centre the variables in it (e.g. subtract about {centre}, or `center(...)`)"
    where = f"`{name}` runs from {low:g} to {high:g}" if low is not None else f"`{name}`"
    return (
        f"{where}: its mean ({mean:.3g}) is {abs(mean) / sd:.0f} sds from zero, so its "
        "slope and the intercept are nearly collinear and the sampler crawls along the "
        f"ridge between them; {how}."
    )


def _count_hint(spec, design) -> str:
    y = np.asarray(design.y, dtype=float)
    top = float(np.max(y)) if y.size else 0.0
    if top < LARGE_COUNT:
        return ""
    centred = [t.group for t in spec.terms if getattr(t, "centered", spec.centered)]
    other = [t.group for t in spec.terms if t.group not in centred]
    text = (
        f"`{spec.response}` holds counts up to {top:,.0f}: a {spec.family} likelihood of "
        "counts this large is very sharp, so the smallest misfit stalls the sampler."
    )
    if other:
        text += (
            " Groups with this much data pin down their effects: sample them centred "
            "(centered=True)."
        )
    if spec.family == "poisson":
        text += (
            " Counts this large are rarely Poisson: try family='negative_binomial', or a "
            "gaussian model of their logarithm."
        )
    return text


def _imputation_hints(imp, design, spec) -> list[str]:
    """A predictor imputed under missing='model' that is constant within the groups of
    a grouping factor: its imputation model's residual sd has nothing to estimate it
    (within-group variation 0) and the sampler stalls at sigma -> 0."""
    if imp.x_columns:
        values = np.asarray(design.X[:, imp.x_columns[0]], dtype=float)
    elif imp.z_columns:
        k, j = imp.z_columns[0]
        values = np.asarray(design.blocks[k].Z[:, j], dtype=float)
    else:
        return []
    observed = np.ones(values.size, dtype=bool)
    observed[np.asarray(imp.positions, dtype=int)] = False
    out, seen = [], set()
    for block in design.blocks:
        group = block.group
        if group in seen:
            continue
        seen.add(group)
        codes = np.asarray(block.codes)[observed]
        x = values[observed]
        rows = np.bincount(codes, minlength=len(block.levels))
        if not (rows >= 2).any():
            continue
        low = np.full(len(block.levels), np.inf)
        high = np.full(len(block.levels), -np.inf)
        np.minimum.at(low, codes, x)
        np.maximum.at(high, codes, x)
        if not np.all(high[rows >= 2] == low[rows >= 2]):
            continue
        missing_codes = np.unique(np.asarray(block.codes)[~observed])
        unseen = int(np.sum(rows[missing_codes] == 0))
        fill = (
            f"Fill its missing values from the other rows of the same {group} before "
            f"fitting (df.groupby('{group}')['{imp.column}'].transform('first'))"
        )
        if unseen:
            fill += (
                f"; {unseen} {group} level(s) have no observed value: supply it or drop their rows"
            )
        out.append(
            f"`{imp.column}` is constant within each level of `{group}` (a {group}-level "
            f"covariate), so its imputation model (missing='model') cannot identify it: "
            f"the spread of `{imp.column}` within a {group} is 0, and its model's sigma is "
            f"driven to 0, where the sampler stalls. {fill}; or use missing='drop'."
        )
    return out
