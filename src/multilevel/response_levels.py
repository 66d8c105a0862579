"""A bernoulli response stored as people store it: a two-level factor or text column
(``"Y"``/``"N"``, ``"yes"``/``"no"``), coded as glmer codes it.

glmer reads a factor response with the first level as failure and the other as success;
for text, R's levels are sorted, so ``"N"`` < ``"Y"`` makes ``"Y"`` the success. A pandas
categorical keeps its own order of categories (its second is the success). The level that
counts as success is kept in the spec and printed with the model, so the reading is never
a guess. True/False columns are 1/0 as before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from multilevel.errors import DataError


def is_two_level_text(values: pd.Series) -> bool:
    """Text or categorical cells (not numbers stored as text) with two distinct values."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return len(values.cat.categories) == 2
    if values.dtype != object and not pd.api.types.is_string_dtype(values.dtype):
        return False
    distinct = pd.unique(values.dropna())
    if len(distinct) != 2 or not all(isinstance(v, str) for v in distinct):
        return False
    return pd.to_numeric(pd.Series(distinct), errors="coerce").isna().all()


def two_levels(values: pd.Series) -> tuple[str, str]:
    """(failure, success): a categorical's own order, else sorted as R sorts levels."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        failure, success = (str(c) for c in values.cat.categories)
        return failure, success
    failure, success = sorted(str(v) for v in pd.unique(values.dropna()))
    return failure, success


def encode_two_levels(values: pd.Series, column: str, levels=None) -> np.ndarray:
    """0/1 for the failure/success levels (``two_levels`` unless ``levels`` is given: a
    refit or new rows read with the fitted model's levels)."""
    failure, success = levels if levels is not None else two_levels(values)
    text = values.astype(str)
    other = ~text.isin([failure, success]).to_numpy() & values.notna().to_numpy()
    if other.any():
        row = int(np.flatnonzero(other)[0])
        raise DataError(
            f"The response `{column}` is read as {success!r} (success) against {failure!r} "
            f"(failure), but row {row} holds {values.iloc[row]!r}. Recode it to one of the two."
        )
    return (text == success).to_numpy(dtype=float)


def ordinal_codes(values: pd.Series, column: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """(codes 0..K-1, category labels in order) of an ordinal response: an ordered
    categorical (its categories' order) or whole numbers (sorted). Every category must
    occur: a threshold between categories nobody chose is not identified by the data."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        if not values.cat.ordered:
            raise DataError(
                f"The ordinal response `{column}` is an unordered categorical: say the order, "
                f"e.g. data[{column!r}] = data[{column!r}].cat.as_ordered() (if the categories "
                "are listed in order) or pd.Categorical(..., categories=[...], ordered=True)."
            )
        levels = tuple(str(c) for c in values.cat.categories)
        counts = values.value_counts(sort=False).reindex(values.cat.categories).to_numpy()
        _check_every_category(levels, counts, column)
        return values.cat.codes.to_numpy().astype(float), levels
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        raise DataError(
            f"The ordinal response `{column}` holds text ({', '.join(map(repr, pd.unique(values)[:4]))}"
            "...), whose order is unknown: make it an ordered categorical, "
            f"pd.Categorical(data[{column!r}], categories=[lowest, ..., highest], ordered=True), "
            "or code it as whole numbers."
        )
    numbers = values.to_numpy(dtype=float)
    if (numbers != np.round(numbers)).any():
        row = int(np.flatnonzero(numbers != np.round(numbers))[0])
        raise DataError(
            f"An ordinal response needs ordered categories or whole numbers, but `{column}` "
            f"holds {numbers[row]:g} in row {row}."
        )
    present = np.unique(numbers)
    full = np.arange(present.min(), present.max() + 1)
    counts = np.array([(numbers == v).sum() for v in full])
    levels = tuple(str(int(v)) for v in full)
    _check_every_category(levels, counts, column)
    return np.searchsorted(present, numbers).astype(float), levels


def _check_every_category(levels: tuple[str, ...], counts: np.ndarray, column: str) -> None:
    empty = [level for level, count in zip(levels, counts) if count == 0]
    if empty:
        raise DataError(
            f"The ordinal response `{column}` has no row in categor{'y' if len(empty) == 1 else 'ies'} "
            f"{', '.join(map(repr, empty))} (of {', '.join(map(repr, levels))}): the thresholds "
            "around an empty category are not identified. Merge it with a neighbour or drop it "
            "from the categories (data[col].cat.remove_unused_categories())."
        )
    if len(levels) < 2:
        raise DataError(f"The ordinal response `{column}` has one category; nothing to model.")


def categorical_codes(values: pd.Series, column: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """(codes 0..K-1, category labels) of a categorical response: a pandas categorical
    (its categories' order; the first is the reference, as in brms), or text and numbers
    (sorted). Every category must occur, and there must be at least two."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        levels = tuple(str(c) for c in values.cat.categories)
        counts = values.value_counts(sort=False).reindex(values.cat.categories).to_numpy()
        _check_every_category(levels, counts, column)
        return values.cat.codes.to_numpy().astype(float), levels
    present = sorted(pd.unique(values), key=lambda v: (str(type(v)), v))
    levels = tuple(str(v) for v in present)
    if len(set(levels)) != len(levels):
        raise DataError(f"The categories of `{column}` are not distinct as text: {levels}.")
    if len(levels) < 2:
        raise DataError(f"The categorical response `{column}` has one category; nothing to model.")
    index = {v: k for k, v in enumerate(present)}
    return np.array([index[v] for v in values], dtype=float), levels
