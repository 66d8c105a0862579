"""Random formulas and data frames through ``ml.Model``: every failure is ours, nothing runs.

A seeded generator (reproducible; no extra dependency) builds formulas from pieces a user
or an attacker might write: columns that exist or not, quoted and non-ASCII names, the
allowed transforms, syntax from brms we lack, malformed bars, and payloads that would
create a marker file if any Python in the formula were evaluated unchecked. Data frames
vary in types (numbers, strings, categories, booleans, dates), missing cells and
size. Every ``ml.Model`` call must either build a model or raise a ``MultilevelError``
with a message; the marker file must never appear. Only model construction runs here
(no sampling), about 10 ms a case.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.errors import MultilevelError

N_CASES = 400


def _frame(rng: np.random.Generator) -> pd.DataFrame:
    n = int(rng.choice([1, 5, 40, 40, 40, 80]))
    columns = {
        "y": rng.normal(size=n),
        "k": rng.poisson(3, size=n),
        "n": np.full(n, 10),
        "x": rng.normal(size=n),
        "z": rng.integers(0, 4, size=n).astype(float),
        "g": rng.choice(list("abcd"), size=n),
        "h": rng.choice(["u", "v"], size=n),
        "my g": rng.choice(["p", "q", "r"], size=n),
        "δ": rng.normal(size=n),
    }
    frame = pd.DataFrame(columns)
    twist = rng.integers(0, 16)  # 0 and 8-15: the frame as built
    if twist == 1:
        frame.loc[frame.index[0], "x"] = np.nan
    elif twist == 2:
        frame["x"] = frame["x"].astype(object)
        frame.loc[frame.index[0], "x"] = "oops"
    elif twist == 3:
        frame["z"] = pd.date_range("2020-01-01", periods=n)
    elif twist == 4:
        frame["y"] = frame["y"].astype(str)
    elif twist == 5:
        frame["g"] = frame["g"].astype("category")
    elif twist == 6:
        frame["h"] = frame["h"] == "u"
    elif twist == 7:
        frame = frame.drop(columns=[str(rng.choice(list(frame.columns)))])
    return frame


def _payload(rng: np.random.Generator, marker: str) -> str:
    code = f"__import__('os').system('touch {marker}')"
    return str(
        rng.choice(
            [
                f"I({code})",
                f"C({code})",
                f"np.log({code})",
                f"{{{code}}}",
                f"np.os.system('touch {marker}')",
                f"I(open('{marker}', 'w'))",
                f"I(exec(\"open('{marker}', 'w')\"))",
                f"Q('{marker}')",
                f"I(getattr(np, 'os').system('touch {marker}'))",
                f"bs(x, df=(lambda: open('{marker}', 'w'))())",
                f"poly(x, [open('{marker}', 'w') for _ in 'a'])",
            ]
        )
    )


_TERMS = [
    "x", "z", "δ", "`my g`", "Q('my g')", "C(g)", "C(h)", "x:z", "x*z", "I(x^2)",
    "np.log(k + 1)", "log1p(k)", "center(x)", "scale(x)", "poly(x, 2)", "bs(x, df=3)",
    "I(x > 0)", "1", "x ^ 2", "(x + z)^2", "{x + 1}", "C(g, levels=['a', 'b', 'c', 'd'])",
    "abs(x)", "sqrt(k)",
]  # fmt: skip
_BAD_TERMS = [
    "missing_col", "s(x)", "mo(z)", "offset(x)", "gp(x)", "cr(x, df=3)", "0", "-1", "1 +",
    "x +", ")", "(", "x | g", "I(x @ x)", "x[0]",
]  # fmt: skip
_GROUPS = [
    "(1 | g)", "(x | g)", "(1 + x || g)", "(0 + x | h)", "(1 | g/h)", "(1 | g:h)",
    "(1 | `my g`)", "(1 | Q('my g'))", "(1 + I(x^2) | g)",
]  # fmt: skip
_BAD_GROUPS = ["(1 | missing_col)", "(1 |)", "( | g)", "(1 ||| g)", "(1 | x + g)"]
_RESPONSES = ["y"] * 8 + ["k", "k | trials(n)", "y | se(x)", "log(y)", "cbind(k, n)", "`y`", ""]
_RESPONSES += ["k | rate(n)", "y | weights(n) + trunc(lb = -Inf)", "y | cens(z)"]
_FAMILIES = ["gaussian"] * 5 + ["poisson", "binomial", "bernoulli", "student_t", "gamma"]


def _formula(rng: np.random.Generator, marker: str) -> str:
    pieces = [str(t) for t in rng.choice(_TERMS, size=rng.integers(0, 4))]
    pieces += [str(t) for t in rng.choice(_GROUPS, size=rng.integers(0, 3))]
    if rng.random() < 0.2:
        pieces.append(str(rng.choice(_BAD_TERMS + _BAD_GROUPS)))
    if rng.random() < 0.25:
        pieces.insert(int(rng.integers(0, len(pieces) + 1)), _payload(rng, marker))
    response = str(rng.choice(_RESPONSES))
    if rng.random() < 0.03:
        return " + ".join(pieces)  # no `~`
    return f"{response} ~ {' + '.join(pieces) or '1'}"


def test_random_formulas_and_frames_fail_only_with_our_errors(tmp_path):
    marker = tmp_path / "MARKER"
    rng = np.random.default_rng(20261202)
    outcomes = {"built": 0, "refused": 0}
    for case in range(N_CASES):
        frame = _frame(rng)
        formula = _formula(rng, str(marker))
        family = str(rng.choice(_FAMILIES))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ml.Model(formula, frame, family=family)
            outcomes["built"] += 1
        except MultilevelError as exc:
            assert str(exc).strip(), f"case {case}: empty message for {formula!r}"
            outcomes["refused"] += 1
        except Exception as exc:  # noqa: BLE001 - the point: name what escaped
            pytest.fail(
                f"case {case}: {type(exc).__name__}: {exc}\n  formula {formula!r}, "
                f"family {family!r}, columns {dict(frame.dtypes.astype(str))}"
            )
        assert not marker.exists(), f"case {case}: {formula!r} ran code"
    # the generator must exercise both paths, or the test proves little
    assert outcomes["built"] >= 40 and outcomes["refused"] >= 100, outcomes
