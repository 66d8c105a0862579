"""multilevel: Bayesian hierarchical regression with lme4-style formulas, on NumPyro.

Examples
--------
>>> import multilevel as ml
>>> radon = ml.datasets.load("radon")
>>> fit = ml.Model("log_radon ~ floor + (1 + floor | county)", radon).fit(seed=1)  # doctest: +SKIP
>>> print(fit)  # doctest: +SKIP
"""

from multilevel import datasets
from multilevel.diagnostics import ConvergenceWarning
from multilevel.errors import DataError, FormulaError, MultilevelError, PriorError
from multilevel.evaluation import LooWarning, compare, plot_compare
from multilevel.fit import Fit, load
from multilevel.model import Model
from multilevel.priors import (
    LKJ,
    Exponential,
    Gamma,
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    InverseWishart,
    Normal,
    StudentT,
)
from multilevel.workflow.pooling import PoolingComparison, compare_pooling
from multilevel.workflow.prior_check import PriorPredictiveCheck, PriorPredictiveWarning
from multilevel.workflow.recover import RecoveryResult, recover
from multilevel.workflow.sbc import SBCResult, sbc

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "Exponential",
    "Gamma",
    "Fit",
    "FormulaError",
    "HalfCauchy",
    "HalfNormal",
    "HalfStudentT",
    "InverseWishart",
    "LKJ",
    "LooWarning",
    "Model",
    "MultilevelError",
    "Normal",
    "PoolingComparison",
    "PriorError",
    "PriorPredictiveCheck",
    "PriorPredictiveWarning",
    "RecoveryResult",
    "SBCResult",
    "StudentT",
    "compare",
    "compare_pooling",
    "datasets",
    "load",
    "plot_compare",
    "recover",
    "sbc",
]
