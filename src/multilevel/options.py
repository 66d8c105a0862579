"""Checks of the sampler's options, before anything is compiled or drawn.

Without them a bad value fails deep inside NumPy or JAX (``seed=-1``: NumPy's
``ValueError``; ``max_tree_depth=0``: an ``IndexError`` from inside the sampler) or is
quietly read as something else (``seed=True`` as 1, ``seed=1.5`` as 1). Every public
function that takes these options calls the functions here first, so each bad value
gets the same ``OptionError`` naming the option, the value and what is allowed.

``FIT_DEFAULTS`` states the defaults of :meth:`multilevel.Model.fit`'s sampler options
for code that shows them without importing the model (``multilevel fit --help``). This
module imports no NumPy: the command line builds its parser from it in milliseconds.
"""

from __future__ import annotations

import math
import numbers

from multilevel.errors import OptionError

# Seeds are stored as 64-bit integers (NumPy seeds, the seed recorded with a fit).
MAX_SEED = 2**63 - 1
# NumPyro counts a tree's leapfrog steps (up to 2^depth - 1) in 32-bit integers.
MAX_TREE_DEPTH = 30

# The defaults of Model.fit's sampler keywords: Model.fit's signature reads them from
# here, and `multilevel fit --help` shows them without importing the model (JAX, 2.5 s).
FIT_DEFAULTS = {
    "chains": 4,
    "warmup": 1000,
    "draws": 1000,
    "seed": 0,
    "target_accept": 0.8,
    "max_tree_depth": 10,
    "method": "auto",
}
# Model.fit's samplers: "auto" chooses between the exact two, "laplace" is only ever asked for
METHODS = ("auto", "nuts", "collapsed", "gibbs", "laplace")
# ml.sbc's chains (many cheap fits): its signature and `multilevel sbc --help` read it
SBC_CHAINS = 2


def _whole(value: object) -> bool:
    """An int or NumPy integer, but not a bool (True is not a seed or a count).

    NumPy's integers are ``numbers.Integral`` and its ``bool_`` is not, so the check
    needs no NumPy import."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_seed(seed: object) -> int:
    """``seed`` as an int: a whole number from 0 to 2**63 - 1 (NumPy integers welcome).

    Examples
    --------
    >>> import numpy as np
    >>> check_seed(np.int64(7))
    7
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    multilevel.errors.OptionError: seed must be a whole number from 0 to 9223372036854775807, got -1.
    """
    if not _whole(seed) or not 0 <= seed <= MAX_SEED:
        hint = ""
        if isinstance(seed, str) and seed.strip().isdigit():
            hint = f" Pass it as a number: seed={int(seed)}."
        elif isinstance(seed, float) and seed.is_integer() and 0 <= seed <= MAX_SEED:
            hint = f" Pass it as a whole number: seed={int(seed)}."
        raise OptionError(f"seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}.{hint}")
    return int(seed)


def check_count(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int, a whole number of at least ``minimum`` (chains, draws, ...)."""
    if not _whole(value) or value < minimum:
        what = "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}"
        raise OptionError(f"{name} must be {what}, got {value!r}.")
    return int(value)


def check_target_accept(value: object) -> float:
    """The NUTS step-size adaptation's target acceptance rate: strictly between 0 and 1."""
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)  # bool_ is not Real
    if not number or not math.isfinite(value) or not 0 < value < 1:
        raise OptionError(
            f"target_accept must be a number strictly between 0 and 1 (e.g. 0.9 or 0.95 "
            f"against divergences), got {value!r}."
        )
    return float(value)


def check_max_tree_depth(value: object) -> int:
    """NUTS' maximum tree depth: a whole number from 1 to ``MAX_TREE_DEPTH``."""
    if not _whole(value) or not 1 <= value <= MAX_TREE_DEPTH:
        raise OptionError(
            f"max_tree_depth must be a whole number from 1 to {MAX_TREE_DEPTH} (default 10; "
            f"a tree of depth d takes up to 2^d - 1 leapfrog steps per draw), got {value!r}."
        )
    return int(value)


def check_method(value: object) -> str:
    """``Model.fit``'s ``method``: one of ``METHODS``."""
    if value not in METHODS:
        raise OptionError(
            f"method must be {', '.join(repr(m) for m in METHODS[:-1])} or "
            f"{METHODS[-1]!r}, got {value!r}."
        )
    return value


def check_sampler_options(
    *,
    chains: object,
    warmup: object,
    draws: object,
    seed: object,
    target_accept: object,
    max_tree_depth: object,
) -> None:
    """Check every NUTS option at once; raises ``OptionError`` naming the first bad one.

    Examples
    --------
    >>> check_sampler_options(
    ...     chains=4, warmup=1000, draws=1000, seed=0, target_accept=0.8, max_tree_depth=10
    ... )
    """
    for name, value in (("chains", chains), ("warmup", warmup), ("draws", draws)):
        check_count(name, value)
    check_seed(seed)
    check_target_accept(target_accept)
    check_max_tree_depth(max_tree_depth)
