"""The distributional example of the README and docs/distributional.md: how the residual
sd of log radon varies with the floor a home was measured on and with its county.

Run from the repository root (about a minute on two cores)::

    python docs/examples/distributional_radon.py   # writes docs/img/sigma_radon.png
"""

import numpy as np
import pandas as pd

import multilevel as ml
from multilevel.figures import new_figure, save_figure

radon = ml.datasets.load("radon")
model = ml.Model(
    ml.bf("log_radon ~ floor + (1 | county)", sigma="~ floor + (1 | county)"), radon
)
fit = model.fit(seed=1, progress=False)
print(fit)

counties = sorted(radon["county"].unique())
grid = pd.DataFrame(
    {"county": np.repeat(counties, 2), "floor": np.tile([0, 1], len(counties))}
)
sigma = fit.predict(grid, dpar="sigma").summary()  # each county's sigma per floor
typical = fit.predict(
    pd.DataFrame({"county": ["a typical county"] * 2, "floor": [0, 1]}),
    dpar="sigma",
    groups="population",
).summary()
rows = radon.groupby("county").size().reindex(counties).to_numpy()

fig = new_figure(7.5, 4.2, layout="constrained")
ax = fig.subplots()
x = np.array([0.0, 1.0])
for i in range(len(counties)):
    pair = sigma["mean"].to_numpy()[2 * i : 2 * i + 2]
    ax.plot(x, pair, color="C0", alpha=0.25, lw=0.8 + rows[i] / 40)
ax.fill_between(x, typical["q5"], typical["q95"], color="C3", alpha=0.2,
                label="a typical county: 90% interval")  # fmt: skip
ax.plot(x, typical["mean"], color="C3", lw=2.5, label="a typical county: posterior mean")
ax.set_xticks(x, ["basement (floor = 0)", "first floor (floor = 1)"])
ax.set_ylabel("sigma: residual sd of log radon")
ax.set_title(
    "sigma ~ floor + (1 | county): one line per county (width: its homes)", fontsize=10
)
ax.legend(frameon=False, fontsize="small")
save_figure(fig, "docs/img/sigma_radon.png")
print(typical[["floor", "mean", "q5", "q95"]])
