"""multilevel: Bayesian hierarchical regression with lme4-style formulas, on NumPyro.

Examples
--------
>>> import multilevel as ml
>>> radon = ml.datasets.load("radon")
>>> fit = ml.Model("log_radon ~ floor + (1 + floor | county)", radon).fit(seed=1)  # doctest: +SKIP
>>> print(fit)  # doctest: +SKIP
"""

from importlib import import_module
from typing import TYPE_CHECKING

# Public name -> the module that defines it. The modules are imported on first use
# (PEP 562 `__getattr__`), not here: importing `multilevel` (and so `multilevel.cli`,
# `multilevel.errors`) then costs no JAX, and `multilevel --version` answers at once.
_EXPORTS = {
    "datasets": "multilevel.datasets",
    "ConvergenceWarning": "multilevel.diagnostics",
    "DataError": "multilevel.errors",
    "FitFileError": "multilevel.errors",
    "OptionError": "multilevel.errors",
    "FormulaError": "multilevel.errors",
    "MultilevelError": "multilevel.errors",
    "PriorError": "multilevel.errors",
    "LooWarning": "multilevel.evaluation",
    "compare": "multilevel.evaluation",
    "plot_compare": "multilevel.evaluation",
    "DistributionalFormula": "multilevel.formula",
    "bf": "multilevel.formula",
    "Fit": "multilevel.fit",
    "load": "multilevel.fit",
    "Model": "multilevel.model",
    "LKJ": "multilevel.priors",
    "Exponential": "multilevel.priors",
    "Gamma": "multilevel.priors",
    "HalfCauchy": "multilevel.priors",
    "HalfNormal": "multilevel.priors",
    "HalfStudentT": "multilevel.priors",
    "InverseWishart": "multilevel.priors",
    "Normal": "multilevel.priors",
    "StudentT": "multilevel.priors",
    "PoolingComparison": "multilevel.workflow.pooling",
    "compare_pooling": "multilevel.workflow.pooling",
    "PriorPredictiveCheck": "multilevel.prior_check",
    "PriorPredictiveWarning": "multilevel.prior_check",
    "RecoveryResult": "multilevel.workflow.recover",
    "recover": "multilevel.workflow.recover",
    "KFoldResult": "multilevel.workflow.kfold",
    "kfold": "multilevel.workflow.kfold",
    "SBCResult": "multilevel.workflow.sbc",
    "sbc": "multilevel.workflow.sbc",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'multilevel' has no attribute {name!r}")
    module = import_module(_EXPORTS[name])
    value = module if module.__name__ == f"multilevel.{name}" else getattr(module, name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from multilevel import datasets
    from multilevel.diagnostics import ConvergenceWarning
    from multilevel.errors import (
        DataError,
        FitFileError,
        FormulaError,
        MultilevelError,
        OptionError,
        PriorError,
    )
    from multilevel.evaluation import LooWarning, compare, plot_compare
    from multilevel.fit import Fit, load
    from multilevel.formula import DistributionalFormula, bf
    from multilevel.model import Model
    from multilevel.prior_check import PriorPredictiveCheck, PriorPredictiveWarning
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
    from multilevel.workflow.kfold import KFoldResult, kfold
    from multilevel.workflow.pooling import PoolingComparison, compare_pooling
    from multilevel.workflow.recover import RecoveryResult, recover
    from multilevel.workflow.sbc import SBCResult, sbc

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "DistributionalFormula",
    "FitFileError",
    "OptionError",
    "Exponential",
    "Gamma",
    "Fit",
    "FormulaError",
    "HalfCauchy",
    "HalfNormal",
    "HalfStudentT",
    "InverseWishart",
    "KFoldResult",
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
    "bf",
    "compare_pooling",
    "datasets",
    "kfold",
    "load",
    "plot_compare",
    "recover",
    "sbc",
]
