"""The cbpp example of docs/effects.md: new cases of contagious bovine pleuropneumonia in
15 zebu herds in Ethiopia, counted in four periods (lme4::cbpp, Lesnoff et al. 2004), as
a binomial logit with a varying intercept per herd,
``incidence | trials(size) ~ period + (1 | herd)``.

How likely is an animal to fall ill in each period: in a typical herd (``groups=
"zero"``, every herd effect 0) and on average over the population of herds
(``"integrated"``)? The link is the logit, so the two differ: averaging over herds pulls a
probability toward 1/2 (here, all below 1/2, up), and the odds ratio between periods
toward 1 (attenuation), though the difference of probabilities need not shrink.

Run from the repository root (about 10 seconds on two cores)::

    python docs/examples/effects_cbpp.py   # writes docs/img/effects_cbpp.png
"""

import time

import numpy as np

import multilevel as ml
from multilevel.figures import new_figure, save_figure

cbpp = ml.datasets.load("cbpp")  # period: "1".."4", text; herd: "1".."15"
start = time.perf_counter()
model = ml.Model("incidence | trials(size) ~ period + (1 | herd)", cbpp, family="binomial")
fit = model.fit(seed=1, progress=False)  # 4 chains x 1000 draws
print(f"fit: {time.perf_counter() - start:.1f} s")
print(fit)

start = time.perf_counter()
periods = {"period": ["1", "2", "3", "4"]}  # trials default to 1: a probability per animal
typical = fit.predictions(at=periods, groups="zero")
averaged = fit.predictions(at=periods, groups="integrated")
print(typical)
print(averaged)

# Period 4 against period 1, as a difference and a ratio of probabilities.
for groups in ("zero", "integrated"):
    for comparison in ("difference", "ratio"):
        table = fit.comparisons("period", at={"period": ["1"]}, contrast=("1", "4"),
                                groups=groups, comparison=comparison).summary()  # fmt: skip
        row = table.iloc[0]
        print(f"period 4 vs 1, {groups:>10}, {comparison:>10}: {row['estimate']:.3f} "
              f"(90% {row['q5']:.3f} to {row['q95']:.3f})")  # fmt: skip


def odds_ratio(high, low):
    """comparison= takes any function of the two predictions' draws."""
    return (high / (1 - high)) / (low / (1 - low))


for groups in ("zero", "integrated"):  # zero: exp(b) of period 4, the same in every herd
    row = fit.comparisons("period", at={"period": ["1"]}, contrast=("1", "4"), groups=groups,
                          comparison=odds_ratio).summary().iloc[0]  # fmt: skip
    print(f"period 4 vs 1, {groups:>10}, odds ratio: {row['estimate']:.3f} "
          f"(90% {row['q5']:.3f} to {row['q95']:.3f})")  # fmt: skip
b4 = np.exp(fit.idata.posterior["period[T.4]"].values.reshape(-1))
print(f"exp(period[T.4]): {b4.mean():.3f}")

# Over the fitted rows (at="data", the default) each row keeps its own size, so the mean
# is an expected number of cases in that herd and period, not a probability.
print(fit.comparisons("period", by=True, groups="integrated").summary().round(2))
print(f"effects: {time.perf_counter() - start:.1f} s")

pooled = cbpp.groupby("period")[["incidence", "size"]].sum()
observed = (pooled["incidence"] / pooled["size"]).reindex(periods["period"]).to_numpy()
print("observed share of animals ill (all herds pooled):", observed.round(3))

fig = new_figure(6.5, 4.0, layout="constrained")
ax = fig.subplots()
x = np.arange(4)
for effect, shift, colour, label in (
    (typical, -0.12, "C3", "a typical herd (groups='zero')"),
    (averaged, 0.12, "black", "averaged over herds (groups='integrated')"),
):
    table = effect.summary()
    estimate = table["estimate"].to_numpy()
    ax.errorbar(x + shift, estimate, yerr=[estimate - table["q5"], table["q95"] - estimate],
                fmt="o", color=colour, capsize=3, label=f"{label}, 90%")  # fmt: skip
ax.plot(x, observed, "D", color="white", mec="C0", ms=6, mew=1.2,
        label="observed share, herds pooled")  # fmt: skip
ax.set_xticks(x, [f"period {p}" for p in periods["period"]])
ax.set_ylabel("probability an animal falls ill")
ax.set_title("incidence | trials(size) ~ period + (1 | herd), binomial logit", fontsize=10)
ax.legend(frameon=False, fontsize="small")
save_figure(fig, "docs/img/effects_cbpp.png")
