"""Saved fits on disk: written whole or not at all, read as data and nothing else.

A fit is saved as one netCDF-4 file (HDF5 underneath), one group per part of its
InferenceData, with the model's spec and the fit's info as JSON text in two attributes of
the ``posterior`` group. Fits are files people share, so opening one must be as safe as
opening a CSV:

* ``write`` writes to a temporary file in the target's folder, flushes it to disk and
  renames it over the target (``os.replace``, atomic on one file system). A crash, a
  ``kill -9`` or Ctrl-C while writing leaves the old file as it was; only ``kill -9`` can
  leave the temporary ``.NAME.<random>.tmp`` behind (nothing runs to remove it then).
* ``read`` takes only data: it first walks the file's HDF5 structure and refuses links
  to other files, external or virtual storage, compression filters that HDF5 would load
  as a plugin, nested or unexpected groups and any data type that is not a number,
  boolean or text; then it reads each group eagerly (the file is closed afterwards, and a
  damaged chunk fails here rather than in a later summary) with time decoding off. Nothing
  on this path unpickles or evaluates: netCDF/HDF5 has no pickled objects, and h5py,
  h5netcdf and xarray's CF decoding turn bytes into numbers and strings only.
* ``check_info`` and ``check_draws`` check the fit's info JSON and that the draws have
  every variable of the spec (``ModelSpec.from_json`` checks the spec itself, its
  formula included) with the right dimensions, so a crafted file gets a
  ``FitFileError`` naming the file and what is wrong instead of a traceback later.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import numpy as np

from multilevel.atomic_write import write_atomically
from multilevel.errors import FitFileError, MultilevelError
from multilevel.families import FAMILIES
from multilevel.spec import ModelSpec

__all__ = ["GROUPS", "check_draws", "check_info", "read", "write"]

# The InferenceData groups a fit holds (posterior_predictive after fit.ppc()).
GROUPS = ("posterior", "sample_stats", "log_likelihood", "observed_data", "posterior_predictive")
REQUIRED_GROUPS = ("posterior", "sample_stats")
SPEC_ATTRIBUTE, INFO_ATTRIBUTE = "multilevel_spec", "multilevel_info"
# what to do about a file that was changed or made by something else
EDITED = "Use the file fit.save wrote (it was changed since, or made elsewhere), or fit again."

# Filters built into libhdf5 and h5py (deflate, shuffle, fletcher32, szip, nbit,
# scale-offset, lzf). Any other filter id makes HDF5 search its plugin folder for a
# shared library to load, so it is refused before a byte of data is read.
BUILT_IN_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})

# info keys every fit has, and optional ones, with their types; other keys are kept
# (they are plain JSON, and nothing reads them unless it knows them)
INFO_REQUIRED = {"method": str, "n_rows": int, "settings": dict, "timing": dict}
INFO_OPTIONAL = {
    "seed": int,
    "log_likelihood": str,
    "device": str,
    "missing": str,
    "hints": list,  # causes of non-convergence found in the data (format_fit reads str items)
    "laplace": dict,  # method="laplace": its accuracy report (k_hat, Newton's convergence)
}
SETTINGS = {
    "chains": int,
    "warmup": int,
    "draws": int,
    "target_accept": float,
    "max_tree_depth": int,
}
TIMING = {"compile_s": float, "sampling_s": float, "total_s": float}
TIMING_OPTIONAL = {  # fits saved since the sampler reports its phases (nuts.ChainCost)
    "warmup_s": float,
    "draws_s": float,
    "gradients_warmup": list,
    "gradients_sampling": list,
    "chain_workers": int,
    "seconds_per_gradient": float,
}


# --------------------------------------------------------------------------- writing
def write(idata, path: str | Path) -> Path:
    """Write ``idata`` to ``path`` atomically: an existing file there is replaced only
    by a complete new one. Groups other than ``GROUPS`` are refused (``ml.load`` would
    refuse the file)."""
    path = Path(path)
    unknown = [g for g in idata.groups() if g not in GROUPS]
    if unknown:
        raise MultilevelError(
            f"Cannot save the fit: its InferenceData has the group(s) "
            f"{', '.join(map(repr, unknown))}, and a saved fit holds only "
            f"{', '.join(GROUPS)}. Remove them first (del fit.idata[{unknown[0]!r}])."
        )
    return write_atomically(path, lambda temporary: _write_netcdf(idata, temporary))


def _write_netcdf(idata, path: Path) -> None:
    """The one call that writes the file (tests replace it to inject faults)."""
    idata.to_netcdf(str(path), engine="h5netcdf")


# --------------------------------------------------------------------------- reading
def read(path: str | Path) -> tuple[dict, str, str]:
    """The groups of a saved fit (``{name: xarray.Dataset}``, in memory) and its spec
    and info JSON texts. Raises ``FitFileError`` naming the file and what is wrong."""
    path = Path(path)

    def refuse(what: str) -> FitFileError:
        return FitFileError(f"Cannot read the saved fit {str(path)!r}: {what}")

    if path.is_dir():
        raise refuse("it is a directory, not a file.")
    try:
        groups = _checked_structure(path)
    except FitFileError as exc:
        raise refuse(f"{exc} {EDITED}") from None
    except Exception as exc:  # anything h5py says about bytes that are not HDF5
        raise refuse(_unreadable(path, exc)) from None
    datasets = {}
    for group in groups:
        try:
            datasets[group] = _read_group(path, group)
        except Exception as exc:  # a damaged chunk, a truncated write, bad metadata
            raise refuse(
                f"its {group!r} group cannot be read ({_one_line(exc)}); the file is "
                "damaged or was not written completely. Save the fit again."
            ) from None
    missing = [g for g in REQUIRED_GROUPS if g not in datasets]
    if missing:
        raise refuse(f"it has no {missing[0]!r} group: not a fit saved by multilevel.")
    for group, dataset in datasets.items():
        for name, variable in dataset.variables.items():
            if not _plain_values(variable.values, text=name in dataset.coords):
                raise refuse(
                    f"{group}/{name} holds {variable.dtype} values; a saved fit holds "
                    f"numbers (and text labels) only. {EDITED}"
                )
    attrs = datasets["posterior"].attrs
    texts = [attrs.pop(key, None) for key in (SPEC_ATTRIBUTE, INFO_ATTRIBUTE)]
    if texts[0] is None:
        raise refuse("it has no model spec: a netCDF file, but not a fit saved by multilevel.")
    if not all(isinstance(t, str) for t in texts):
        raise refuse("its model spec or info is not text.")
    return datasets, texts[0], texts[1]


def _checked_structure(path: Path) -> list[str]:
    """The file's groups, after checking (without reading any data) that it is plain
    data: top-level groups of ``GROUPS`` only, each holding datasets of numbers or text
    stored inside this file, with built-in filters only."""
    import h5py

    with h5py.File(path, "r") as root:
        for name in root:
            _check_link(root, name)
            group = root[name]
            if not isinstance(group, h5py.Group):
                raise FitFileError(
                    f"it holds data ({name!r}) outside the groups a saved fit has "
                    f"({', '.join(GROUPS)})."
                )
            if name not in GROUPS:
                raise FitFileError(
                    f"it holds the group {name!r}, which is not one a saved fit has "
                    f"({', '.join(GROUPS)})."
                )
            for member in group:
                _check_link(group, member, f"{name}/")
                _check_dataset(group[member], f"{name}/{member}")
        return [name for name in GROUPS if name in root]


def _check_link(group, name: str, prefix: str = "") -> None:
    import h5py

    link = group.get(name, getlink=True)
    if not isinstance(link, h5py.HardLink):
        raise FitFileError(
            f"{prefix}{name} is a link ({type(link).__name__}) to another place or file; "
            "a saved fit holds its data itself."
        )


def _check_dataset(node, where: str) -> None:
    import h5py

    if not isinstance(node, h5py.Dataset):
        raise FitFileError(f"{where} is a nested group; a saved fit has none.")
    if node.external or node.is_virtual:
        raise FitFileError(f"{where} is stored in other files; a saved fit holds its data itself.")
    plist = node.id.get_create_plist()
    filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
    if not filters <= BUILT_IN_FILTERS:
        raise FitFileError(
            f"{where} needs the HDF5 filter(s) {sorted(filters - BUILT_IN_FILTERS)}, which "
            "would be loaded as plugins; a saved fit uses built-in compression only."
        )
    dtype = node.dtype
    if not (dtype.kind in "biuf" or h5py.check_string_dtype(dtype) is not None):
        raise FitFileError(f"{where} holds {dtype} values, not numbers or text.")


def _read_group(path: Path, group: str):
    import xarray as xr

    # eager (load, then close the file): no file handle outlives load, and a damaged
    # chunk fails here; no time decoding, the fit has no times
    with xr.open_dataset(
        path, group=group, engine="h5netcdf", decode_times=False, decode_timedelta=False
    ) as dataset:
        return dataset.load()


def _plain_values(values: np.ndarray, text: bool) -> bool:
    if values.dtype.kind in "biuf":
        return True
    if not text:
        return False
    if values.dtype.kind in "US":
        return True
    return values.dtype.kind == "O" and all(isinstance(v, str) for v in values.ravel())


def _unreadable(path: Path, exc: Exception) -> str:
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        head = handle.read(8)
        if not head:
            return "it is empty (a save that never finished?)."
        if head[:3] == b"CDF":
            return "it is a netCDF-3 file; a saved fit is netCDF-4, written by fit.save."
        if head != b"\x89HDF\r\n\x1a\n":
            return "it is not a netCDF file (a saved fit is one, written by fit.save)."
    return f"it is damaged or was not written completely ({_one_line(exc)}). Save the fit again."


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# --------------------------------------------------------------------------- checking
def check_info(text: str) -> dict:
    """The fit's info (timing, sampler settings, data size), checked field by field."""
    try:
        info = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise FitFileError(f"its info is not valid JSON ({exc}).") from None
    if not isinstance(info, dict):
        raise FitFileError(f"its info must be a JSON object, got {type(info).__name__}.")
    _check_fields(info, INFO_REQUIRED, INFO_OPTIONAL, "info")
    _check_fields(info["settings"], SETTINGS, {}, "info.settings")
    _check_fields(info["timing"], TIMING, TIMING_OPTIONAL, "info.timing")
    settings = info["settings"]
    if (
        min(settings["chains"], settings["draws"], settings["max_tree_depth"]) < 1
        or not 0 < settings["target_accept"] < 1
    ):
        raise FitFileError(f"its info.settings are impossible: {settings}.")
    return info


def _check_fields(record: dict, required: dict, optional: dict, where: str) -> None:
    for key in required:
        if key not in record:
            raise FitFileError(f"its {where} lacks {key!r}.")
    for key, kind in {**required, **optional}.items():
        if key in record and not _is(record[key], kind):
            raise FitFileError(
                f"its {where}.{key} must be {kind.__name__}, got {record[key]!r:.60}."
            )


def _is(value, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if kind is float:
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    return isinstance(value, kind)


def check_draws(datasets: dict, spec: ModelSpec, info: dict) -> None:
    """Every variable the spec names is in the draws, with the spec's dimensions."""
    posterior, stats = datasets["posterior"], datasets["sample_stats"]
    if "chain" not in posterior.dims or "draw" not in posterior.dims:
        raise FitFileError("its posterior has no chain and draw dimensions.")
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    if n_chains < 1 or n_draws < 1:
        raise FitFileError("its posterior holds no draws.")
    for name, variable in posterior.data_vars.items():
        if variable.dims[:2] != ("chain", "draw"):
            raise FitFileError(f"posterior/{name} has dimensions {variable.dims}.")
    wanted = {name: () for name in (*spec.hyper_names, *spec.imputation_names)}
    for term in spec.terms:
        wanted.update({name: (len(term.levels),) for name in term.effect_names})
    for imp in spec.imputed:
        wanted[imp.values_name] = (len(imp.rows),)
        if imp.group is not None:
            wanted[imp.effect_name] = (len(spec.terms[imp.block].levels),)
    for name, shape in wanted.items():
        _require(posterior, "posterior", name, (n_chains, n_draws, *shape))
    for name in ("diverging", "n_steps"):
        _require(stats, "sample_stats", name, (n_chains, n_draws))
    n_rows = info["n_rows"]
    if "log_likelihood" in datasets:
        _require(
            datasets["log_likelihood"], "log_likelihood", spec.response, (n_chains, n_draws, n_rows)
        )
    if "observed_data" in datasets:
        # a multinomial's observed counts: one column per category (its count columns)
        per_row = (
            (len(spec.response_levels),) if FAMILIES[spec.family].multivariate_response else ()
        )
        _require(datasets["observed_data"], "observed_data", spec.response, (n_rows, *per_row))


def _require(dataset, group: str, name: str, shape: tuple[int, ...]) -> None:
    if name not in dataset.data_vars:
        raise FitFileError(f"its {group} lacks {name!r}, which its model spec names.")
    if dataset[name].shape != shape:
        raise FitFileError(
            f"{group}/{name} has shape {dataset[name].shape}; its model spec and info say {shape}."
        )
