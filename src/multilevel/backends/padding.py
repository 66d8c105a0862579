"""The sampler's inputs padded to their size bucket, and its draws cut back.

A model's compiled sampler is keyed by its structure (which holds each term's number of
groups) and by its arrays' shapes (which hold the number of rows). Padding both to their
bucket (``shape_buckets``) lets data of another size in the same bucket reuse the
compiled programs, in this process and from the persistent compilation cache.

* Rows: copies of the first row with weight 0 (``data["weight"]``, which every padded
  input carries, so an input that needs no padding has the same arrays). Copies keep
  every value in the family's support, so the masked rows' gradients stay finite.
* Groups: each term's levels up to the bucket. Nothing reads a padded group's effects;
  non-centred they are independent standard normals; centred, the model gives them
  that density instead of the term's (``data["level_counts"]``, the true counts).
* Draws: every site with a group axis is cut back to the true levels (``unpad``).
"""

from __future__ import annotations

import dataclasses
import re

import jax
import numpy as np

from multilevel.backends.numpyro_model import Structure
from multilevel.shape_buckets import bucket, pad_groups

# sites with a group axis first (after any chain and draw axes): z_<k>, r_<k>,
# effects_<k> of term k and z_linked_<i> of linked set i
_TERM_SITE = re.compile(r"^(?:z|r|effects)_(\d+)$")
_LINKED_SITE = re.compile(r"^z_linked_(\d+)$")


def paddable(st: Structure) -> bool:
    """Whether the structure's inputs can be padded: not with sampled missing values
    (their positions and groups are part of the structure)."""
    return not st.imputed


def padded_structure(st: Structure) -> Structure:
    """``st`` with each term's number of groups rounded up to its bucket."""
    terms = tuple(dataclasses.replace(t, n_levels=bucket(t.n_levels)) for t in st.terms)
    return dataclasses.replace(st, terms=terms)


def level_counts(st: Structure) -> np.ndarray:
    """(terms,) each term's true number of groups: model data, so that one compiled
    program serves every count in the bucket."""
    return np.array([t.n_levels for t in st.terms], dtype=np.int32)


# The joint sampler's data keys whose arrays have one row per data row (axis 0): arrays,
# tuples of arrays (one per group term or family parameter) and a dict of arrays, and
# the weight (which ``pad_data`` always adds). ``pad_data`` pads them; ``ROW_KEYS`` are
# what ``inference.sharding`` splits across devices.
ROW_ARRAYS = ("X", "y", "trials", "offset", "X_cs", "se")
ROW_TUPLES = ("Z", "codes", "X_dpars")
ROW_KEYS = (*ROW_ARRAYS, *ROW_TUPLES, "bounds", "weight")


def pad_data(st: Structure, data: dict, multiple: int = 1) -> dict:
    """The joint sampler's data (``numpyro_model.data_arrays``, or pooled rows) padded to
    the row bucket with weight-0 copies of the first row, per-group arrays (nested terms'
    parent levels) to the group buckets, and the true group counts added.

    ``multiple``: the padded row count is also a multiple of it (rows split evenly across
    that many devices, ``inference.sharding``); a bucket of more than 8 rows is even, so
    for 2 devices the rows are padded only to their bucket."""
    n = int(np.shape(data["X"])[0])
    extra = -(-bucket(n) // multiple) * multiple - n
    out = dict(data)
    for key in ROW_ARRAYS:
        out[key] = _pad_rows(data.get(key), extra)
    for key in ROW_TUPLES:
        if data.get(key) is not None:
            out[key] = tuple(_pad_rows(a, extra) for a in data[key])
    if data.get("bounds"):
        out["bounds"] = {k: _pad_rows(v, extra) for k, v in data["bounds"].items()}
    dtype = data["X"].dtype  # float64 where the start asked for it
    weight = np.ones(n, dtype) if data.get("weight") is None else np.asarray(data["weight"])
    out["weight"] = jax.device_put(np.concatenate([weight, np.zeros(extra, weight.dtype)]))
    if data.get("parents") is not None:
        out["parents"] = tuple(
            None if a is None else jax.device_put(pad_groups(a)) for a in data["parents"]
        )
    if data.get("level_values") is not None:
        out["level_values"] = tuple(
            None if a is None else jax.device_put(pad_groups(a)) for a in data["level_values"]
        )
    out["level_counts"] = jax.device_put(level_counts(st))
    return out


def pad_statistics(st: Structure, stats: dict) -> dict:
    """The collapsed sampler's statistics (rows and the integrated factor's groups are
    padded already, ``gaussian_collapsed.sufficient_statistics``): the sampled terms'
    parent levels padded to their group buckets, and the true group counts added."""
    out = dict(stats)
    if stats.get("parents"):
        out["parents"] = {k: pad_groups(a) for k, a in stats["parents"].items()}
    out["level_counts"] = level_counts(st)
    return out


def pad_points(points: dict[str, np.ndarray], st: Structure) -> dict[str, np.ndarray]:
    """Chains' starting points (site -> (chains, L, ...), ``st``'s true groups) with zeros
    for the padded groups."""
    return {
        name: value if _site_levels(name, st) is None else pad_groups(value, axis=1)
        for name, value in points.items()
    }


def unpad(samples: dict[str, np.ndarray], st: Structure) -> dict[str, np.ndarray]:
    """Draws (site -> (chains, draws, ...)) with every group axis cut to ``st``'s true
    number of groups."""
    out = {}
    for name, value in samples.items():
        levels = _site_levels(name, st)
        out[name] = value if levels is None else value[:, :, :levels]
    return out


def _site_levels(name: str, st: Structure) -> int | None:
    """The number of groups of a site's group axis under ``st``, or None (no such axis)."""
    match = _TERM_SITE.match(name)
    if match:
        return st.terms[int(match.group(1))].n_levels
    match = _LINKED_SITE.match(name)
    if match:
        return st.terms[st.linked[int(match.group(1))][0]].n_levels
    return None


def _pad_rows(values, extra: int):
    """``values`` (n, ...) with ``extra`` copies of its first row appended (a device
    array), or None."""
    if values is None:
        return None
    if not extra:
        return values
    values = np.asarray(values)
    copies = np.repeat(values[:1], extra, axis=0)
    return jax.device_put(np.concatenate([values, copies]))
