"""The radon example of docs/effects.md: indoor radon in 919 Minnesota homes in 85
counties (the EPA survey of Gelman & Hill 2007), measured in the basement or on the
first floor, with the county's soil uranium as a county-level predictor. The readings
are positive and right-skewed, so the model is lognormal on the original scale (pCi/L),
``radon ~ floor + log_uranium + (1 | county)``: the same model as a gaussian of
log_radon, but its predictions are means in pCi/L, E[radon] = exp(mu + sigma^2 / 2).

How much more radon is there in a basement than on a first floor? In pCi/L that depends
on the county (the county effect multiplies the mean), as a ratio it does not; averaged
over counties (``groups="integrated"``) the mean is exp(sd^2 / 2) times the typical
county's. And how likely is a basement reading above the EPA's action level of 4 pCi/L?

Run from the repository root (about 15 seconds on two cores)::

    python docs/examples/effects_radon.py   # writes docs/img/effects_radon.png
"""

import time

import numpy as np
from scipy import stats

import multilevel as ml
from multilevel.figures import save_figure

radon = ml.datasets.load("radon")
radon = radon.assign(
    radon=np.exp(radon["log_radon"]),  # pCi/L; the 4 readings of 0 were set to 0.1
    floor=radon["floor"].map({0: "basement", 1: "first floor"}),  # a factor, basement first
)
start = time.perf_counter()
model = ml.Model("radon ~ floor + log_uranium + (1 | county)", radon, family="lognormal")
fit = model.fit(seed=1, progress=False)  # 4 chains x 1000 draws
print(f"fit: {time.perf_counter() - start:.1f} s")
print(fit)

start = time.perf_counter()
floors = {"floor": ["basement", "first floor"]}  # log_uranium at its mean over the homes
for groups in ("zero", "integrated"):
    print(fit.predictions(at=floors, groups=groups))
    for comparison in ("difference", "ratio"):
        row = fit.comparisons("floor", at={"floor": ["basement"]}, contrast=("first floor", "basement"),
                              groups=groups, comparison=comparison).summary().iloc[0]  # fmt: skip
        print(f"basement vs first floor, {groups:>10}, {comparison:>10}: {row['estimate']:.3f} "
              f"(90% {row['q5']:.3f} to {row['q95']:.3f})")  # fmt: skip

# The same difference averaged over the 919 homes as they are (their own county and
# uranium): an average effect in the sample rather than at a typical home.
print(fit.comparisons("floor", contrast=("first floor", "basement"), by=True).summary().round(3))

# Uranium: log_uranium is already a log, so the slope of log E[radon] (the link scale)
# is the elasticity of mean radon with respect to uranium: % per %.
print(fit.slopes("log_uranium", at=floors, groups="zero", scale="link").summary().round(3))

# P(reading > 4 pCi/L) in a basement: log(radon) ~ Normal(mu, sigma) in a given county,
# Normal(mu, sqrt(sigma^2 + sd^2)) over the population of counties; mu from the link-
# scale predictions' draws, sigma and sd from the posterior, draw by draw.
mu = fit.predictions(at={"floor": ["basement"]}, groups="zero", scale="link").draws[:, 0]
posterior = fit.idata.posterior
sigma = posterior["sigma"].values.reshape(-1)
sd = posterior["sd(Intercept|county)"].values.reshape(-1)
for name, scale in (("typical county", sigma), ("any county", np.sqrt(sigma**2 + sd**2))):
    above = stats.norm.sf(np.log(4.0), loc=mu, scale=scale)
    print(f"P(basement reading > 4 pCi/L), {name}: {above.mean():.3f} "
          f"(90% {np.quantile(above, 0.05):.3f} to {np.quantile(above, 0.95):.3f})")  # fmt: skip
basement = radon[radon["floor"] == "basement"]
print(f"observed share of basement readings > 4: {(basement['radon'] > 4).mean():.3f}")
print(f"effects: {time.perf_counter() - start:.1f} s")

# brms-style conditional effects over uranium, one line per floor, averaged over counties;
# the typical county's lines (dashed) added to the same axes.
start = time.perf_counter()
fig = fit.plot_effects("log_uranium", by="floor", groups="integrated")
print(f"plot_effects: {time.perf_counter() - start:.1f} s")
ax = fig.axes[0]
for line in ax.get_lines():  # plot_effects labels its lines "floor = basement", ...
    line.set_label(f"{line.get_label()}, averaged over counties")
grid = np.linspace(radon["log_uranium"].min(), radon["log_uranium"].max(), 50)
for i, floor in enumerate(floors["floor"]):
    typical = fit.predictions(at={"log_uranium": grid, "floor": [floor]}, groups="zero")
    ax.plot(grid, typical.summary()["estimate"], color=f"C{i}", ls="--", lw=1,
            label=f"floor = {floor}, a typical county")  # fmt: skip
ax.set_title("lognormal: radon ~ floor + log_uranium + (1 | county)", fontsize=9)
ax.set_ylabel("mean radon (pCi/L)")
ax.set_xlabel("county log uranium (log ppm)")
ax.legend(fontsize=8, frameon=False, loc="upper left")
save_figure(fig, "docs/img/effects_radon.png")
