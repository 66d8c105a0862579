"""The sleepstudy example of docs/effects.md: reaction times of 18 subjects over ten
days of restricted sleep (lme4::sleepstudy, Belenky et al. 2003), with a correlated
varying intercept and slope per subject, ``Reaction ~ Days + (Days | Subject)``. How
slow is a typical subject after nine days, how much slower per day, how much do the
subjects differ, and what should we expect of a subject not in the study?

The link is the identity, so the average over the population of subjects
(``groups="integrated"``) equals the typical subject's prediction (``"zero"``); the
script prints the largest difference between the two, draw by draw.

Run from the repository root (about 10 seconds on two cores)::

    python docs/examples/effects_sleepstudy.py   # writes docs/img/effects_sleepstudy.png
"""

import time

import numpy as np
import pandas as pd

import multilevel as ml
from multilevel.figures import new_figure, save_figure

sleep = ml.datasets.load("sleepstudy")
start = time.perf_counter()
fit = ml.Model("Reaction ~ Days + (Days | Subject)", sleep).fit(seed=1, progress=False)
print(f"fit: {time.perf_counter() - start:.1f} s")  # 4 chains x 1000 draws
print(fit)

days = {"Days": range(10)}
start = time.perf_counter()
typical = fit.predictions(at=days, groups="zero")  # a subject whose own effects are 0
averaged = fit.predictions(at=days, groups="integrated")  # the mean over the population
print(typical)
gap = np.abs(typical.draws - averaged.draws).max()
print(f"identity link: largest |zero - integrated| over draws and days = {gap:.2g} ms")

# The change per day for a typical subject, and for each subject in the study.
per_day = fit.slopes("Days", at={"Days": [0]}, groups="zero").summary()
subjects = sorted(sleep["Subject"].unique())
own = fit.slopes("Days", at={"Days": [0], "Subject": subjects}, groups="fitted").summary()
print(per_day.round(2))
ranked = own.sort_values("estimate")[["Subject", "estimate", "q5", "q95"]]
print(ranked.round(1).to_string(index=False))

# Day 9 minus day 0 for a typical subject, and day 9 for a subject not in the study:
# groups="fitted" draws a new subject's effects from the fitted population, per draw.
change = fit.comparisons("Days", at={"Days": [0]}, contrast=(0, 9), groups="zero").summary()
print(change.round(1))
new = fit.predictions(at={"Days": [9], "Subject": ["new"]}, groups="fitted").summary()
print(pd.concat([typical.summary().iloc[[9]], new]).round(1))
print(f"effects: {time.perf_counter() - start:.1f} s")

every = fit.predictions(at={"Days": range(10), "Subject": subjects}, groups="fitted").summary()
summary = typical.summary()
fig = new_figure(7.5, 4.2, layout="constrained")
ax = fig.subplots()
for i, subject in enumerate(subjects):
    mine = every[every["Subject"] == subject]
    ax.plot(mine["Days"], mine["estimate"], color="C0", alpha=0.35, lw=0.8,
            label="each subject (groups='fitted')" if i == 0 else None)  # fmt: skip
ax.plot(sleep["Days"], sleep["Reaction"], ".", color="0.6", ms=3, label="observed")
ax.fill_between(summary["Days"], summary["q5"], summary["q95"], color="C3", alpha=0.2, lw=0)
ax.plot(summary["Days"], summary["estimate"], color="C3", lw=2,
        label="typical subject (groups='zero'), 90% interval")  # fmt: skip
ax.plot(summary["Days"], averaged.summary()["estimate"], color="black", lw=1, ls=(0, (4, 3)),
        label="averaged over subjects (groups='integrated')")  # fmt: skip
ax.errorbar(9.25, new["estimate"], yerr=[new["estimate"] - new["q5"], new["q95"] - new["estimate"]],
            fmt="o", color="C2", ms=4, capsize=3, label="a new subject's mean, day 9, 90%")  # fmt: skip
ax.set_xticks(range(10))
ax.set_xlabel("days of sleep restriction")
ax.set_ylabel("mean reaction time (ms)")
ax.set_title("Reaction ~ Days + (Days | Subject): posterior mean predictions", fontsize=10)
ax.legend(frameon=False, fontsize="small", loc="upper left")
save_figure(fig, "docs/img/effects_sleepstudy.png")
