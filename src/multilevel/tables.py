"""Tables of estimates: their interval columns and a printed form that hides nothing.

pandas prints a wide DataFrame in a terminal with its middle columns replaced by ``...``
(there ``display.max_columns`` is 0: fit to the window), which hid ``elpd_diff`` and the
intervals of ``ml.compare`` and ``fit.summary()``; and it writes a whole column in
scientific notation when its magnitudes differ (Dyestuff's intercept, 1527.5, printed as
``1.53e+03`` next to an sd of 44). A :class:`Table` is a pandas DataFrame in every
respect but its printed form, which

* shows every column, wrapping the columns that do not fit the terminal's width onto
  further blocks (as R does), rows as pandas shows them (``display.max_rows``);
* writes numbers in plain notation, an estimate to the precision its uncertainty
  supports: the decimals that show its row's sd (or se) to ``DIGITS`` significant
  digits, so the sd's last digit is also the last digit of the mean and interval;
* opens with a caption and closes with notes when the table carries them
  (``attrs["caption"]``, ``attrs["notes"]``), e.g. which interval ``q5``/``q95`` is.

Which columns are estimates of which spread is said by whoever builds the table
(``attrs["precision"]``: column -> the column of its sd, or a fixed number of decimals);
every other float column shows ``DIGITS`` significant digits of its typical magnitude.

Examples
--------
>>> frame = pd.DataFrame({"mean": [1527.4982, 0.0123], "sd": [17.694, 0.00456]})
>>> print(table(frame, precision={"mean": "sd", "sd": "sd"}, caption="Two rows"))
Two rows
      mean       sd
0   1527.5     17.7
1  0.01230  0.00456
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd

from multilevel.errors import OptionError

__all__ = ["DIGITS", "Table", "check_prob", "format_table", "interval_columns", "table"]

#: Significant digits shown of an estimate's sd. brms and lme4 print 2 decimals, which is
#: 3 significant digits for an sd between 1 and 10; this keeps that at every scale. The
#: Monte Carlo error of a posterior mean (sd / sqrt(ESS), about sd / 20 at ESS 400) sits
#: in the sd's second digit, so a third is the last one worth reading.
DIGITS = 3
#: Beyond these, plain notation stops being readable (0.000000012, 12300000000).
MOST_DECIMALS = 8
LARGEST_PLAIN = 1e9


class Table(pd.DataFrame):
    """A DataFrame whose printed form shows every column (see the module doc)."""

    @property
    def _constructor(self):  # pandas' way to keep the class through its operations
        return Table

    def __repr__(self) -> str:
        # $COLUMNS, else the terminal's width, else 80
        return format_table(self, width=shutil.get_terminal_size().columns)


def table(
    frame: pd.DataFrame,
    precision: dict | None = None,
    caption: str | None = None,
    notes: tuple[str, ...] | list[str] = (),
) -> Table:
    """``frame`` as a :class:`Table` that prints its estimates at ``precision`` (column ->
    the column holding its sd, or a number of decimals), under ``caption``, above
    ``notes``. These are kept in ``attrs``, so they follow the table through selections
    and copies."""
    out = Table(frame)
    out.attrs = {
        **frame.attrs,
        "precision": dict(precision or {}),
        "caption": caption,
        "notes": tuple(notes),
    }
    return out


def format_table(frame: pd.DataFrame, index: bool = True, width: int | None = None) -> str:
    """The printed form of a table: caption, every column, notes. Columns that do not
    fit ``width`` characters go on further blocks (None: one line per row, as the CLI
    prints, for scripts to read). Rows beyond pandas' ``display.max_rows`` are shown as
    its first and last ``display.min_rows``, with the count of all."""
    max_rows = pd.get_option("display.max_rows")
    body = plain_numbers(frame).to_string(
        index=index,
        line_width=width,
        max_rows=max_rows,
        min_rows=pd.get_option("display.min_rows"),
        show_dimensions=max_rows is not None and len(frame) > max_rows,
    )
    caption = frame.attrs.get("caption")
    return "\n".join([*([caption] if caption else []), body, *frame.attrs.get("notes", ())])


def plain_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its float columns as text in plain notation: estimates to the
    precision ``frame.attrs["precision"]`` gives them, other columns to ``DIGITS``
    significant digits of their median magnitude (one number of decimals per column, so
    the points line up)."""
    precision = frame.attrs.get("precision") or {}
    out = pd.DataFrame(frame).copy()
    for i, column in enumerate(frame.columns):
        values = frame.iloc[:, i]
        if not pd.api.types.is_float_dtype(values.dtype):
            continue
        values = values.to_numpy(dtype=float)
        rule = precision.get(column)
        if isinstance(rule, str) and rule in frame.columns:
            spreads = frame[rule].to_numpy(dtype=float)
            text = [format_number(x, decimals_for(s, x)) for x, s in zip(values, spreads)]
        elif isinstance(rule, int):
            text = [format_number(x, rule) for x in values]
        else:
            finite = np.abs(values[np.isfinite(values) & (values != 0)])
            typical = float(np.median(finite)) if finite.size else 0.0
            text = [format_number(x, decimals_for(typical, typical)) for x in values]
        out.isetitem(i, text)
    return out


def decimals_for(spread: float, value: float = 0.0) -> int | None:
    """Decimals that show ``spread`` to ``DIGITS`` significant digits (none for a spread
    of 100 or more); for a spread of 0 or NaN, those that show ``value`` so. None: too
    many decimals for plain notation (scientific then).

    >>> decimals_for(17.69), decimals_for(0.0456), decimals_for(250.0), decimals_for(0.0, 2.5)
    (1, 4, 0, 2)
    """
    scale = abs(spread) if math.isfinite(spread) and spread != 0 else abs(value)
    if not math.isfinite(scale) or scale == 0:
        return DIGITS - 1
    decimals = max(0, DIGITS - 1 - math.floor(math.log10(scale)))
    return decimals if decimals <= MOST_DECIMALS else None


def format_number(x: float, decimals: int | None) -> str:
    """``x`` with ``decimals`` decimals; scientific (``DIGITS`` significant digits) when
    ``decimals`` is None or ``|x|`` is ``LARGEST_PLAIN`` or more.

    >>> format_number(1527.4982, 1), format_number(2.5e-10, None), format_number(float("nan"), 2)
    ('1527.5', '2.50e-10', 'NaN')
    """
    if math.isnan(x):
        return "NaN"
    if decimals is None or abs(x) >= LARGEST_PLAIN:
        return f"{x:.{DIGITS - 1}e}"
    return f"{x:.{decimals}f}"


# --------------------------------------------------------------------------- intervals
def check_prob(prob: object) -> float:
    """The probability of a central posterior interval: a number strictly between 0 and 1.

    >>> check_prob(0.95)
    0.95
    """
    number = isinstance(prob, int | float | np.floating) and not isinstance(prob, bool)
    if not number or not 0 < prob < 1:
        raise OptionError(f"prob must be a number between 0 and 1 (e.g. 0.9), got {prob!r}.")
    return float(prob)


def interval_columns(prob: float) -> dict[str, float]:
    """The names of the central ``prob`` interval's bounds, ``q`` and their percentile,
    with the quantile each is.

    >>> interval_columns(0.9), interval_columns(0.95)
    ({'q5': 0.05, 'q95': 0.95}, {'q2.5': 0.025, 'q97.5': 0.975})
    """
    low, high = round((1 - prob) / 2, 12), round((1 + prob) / 2, 12)  # 0.05, not 0.0499...
    return {f"q{round(100 * low, 6):g}": low, f"q{round(100 * high, 6):g}": high}
