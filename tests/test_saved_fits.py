"""Saved fits: ``Fit.save`` writes whole files or nothing, ``ml.load`` and the commands
that read fits (``predict``, ``loo``, ``compare``) take data only and refuse a crafted or
damaged file with one clear message, and a loaded fit is the fit that was saved.

Two small fits are shared by the module: sleepstudy with two rows missing ``Days``
(``missing="drop"``) and a ``missing="model"`` fit. Crafted files are copies of the first
one's file edited with h5py, so no test but the fixtures samples anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from cli_run import run_main

import multilevel as ml
from multilevel import saved_fits
from multilevel._arviz import az
from multilevel.errors import DataError, FitFileError, MultilevelError
from multilevel.fit import Fit
from multilevel.missing import MissingDataWarning

SETTINGS = dict(chains=2, warmup=200, draws=200, seed=1, progress=False, warn=False)
FORMULA = "Reaction ~ Days + (1 | Subject)"
NEW = pd.DataFrame({"Subject": [308, 999], "Days": [5.0, 5.0]})


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    frame = ml.datasets.load("sleepstudy").copy()
    frame["Days"] = frame["Days"].astype(float)
    frame.loc[[4, 90], "Days"] = np.nan
    return frame


@pytest.fixture(scope="module")
def fit(data) -> Fit:
    with pytest.warns(MissingDataWarning, match="Dropped 2 of 180 rows"):
        model = ml.Model(FORMULA, data, missing="drop")
    return model.fit(**SETTINGS)


@pytest.fixture(scope="module")
def saved(fit, tmp_path_factory) -> Path:
    return fit.save(tmp_path_factory.mktemp("saved") / "fit.nc")


# --------------------------------------------------------------------------- a loaded fit


def test_loaded_fit_is_the_saved_fit(fit, saved):
    loaded = ml.load(saved)
    assert loaded.spec == fit.spec and loaded.info == fit.info
    for name, values in fit.idata.posterior.data_vars.items():
        np.testing.assert_array_equal(loaded.idata.posterior[name].values, values.values)


def test_summary_is_identical_after_save_and_load(fit, saved):
    # exact: the same draws must give the same numbers to the last digit
    loaded = ml.load(saved)
    for group_effects in (False, True):
        pd.testing.assert_frame_equal(
            loaded.summary(group_effects=group_effects),
            fit.summary(group_effects=group_effects),
            check_exact=True,
        )


def test_summary_does_not_depend_on_how_the_draws_lie_in_memory(fit):
    # The same float32 draws, once C-ordered and once as a view of a levels-first
    # array (as a sampler's output can be): sums over draws used to add in another
    # order, and the means differed in the 7th digit.
    posterior = fit.idata.posterior

    def summary(levels_first: bool) -> pd.DataFrame:
        variables = {}
        for name, variable in posterior.data_vars.items():
            values = variable.values.astype(np.float32)
            if levels_first and values.ndim == 3:
                values = np.moveaxis(np.ascontiguousarray(np.moveaxis(values, 2, 0)), 0, 2)
            variables[name] = (variable.dims, values)
        idata = az.InferenceData(
            posterior=xr.Dataset(variables, coords=posterior.coords),
            sample_stats=fit.idata.sample_stats,
        )
        return Fit(idata, fit.spec, fit.info).summary(group_effects=True)

    pd.testing.assert_frame_equal(summary(True), summary(False), check_exact=True)


def test_loaded_fit_reads_everything_at_once(fit, saved, tmp_path):
    # the file is closed after load: it can be removed, or saved over from the fit
    copy = Path(shutil.copy(saved, tmp_path / "copy.nc"))
    loaded = ml.load(copy)
    loaded.save(copy)
    again = ml.load(copy)
    copy.unlink()
    pd.testing.assert_frame_equal(again.summary(True), fit.summary(True), check_exact=True)


def test_loaded_drop_fit_predicts_from_the_data_with_its_missing_rows(fit, saved, data):
    loaded = ml.load(saved)
    expected = fit.predict(NEW, kind="response", seed=2).values
    got = loaded.predict(NEW, kind="response", data=data, seed=2).values
    np.testing.assert_array_equal(got, expected)


@pytest.fixture(scope="module")
def imputed() -> tuple[pd.DataFrame, Fit]:
    """A missing="model" fit: three values of a predictor and two responses missing."""
    frame = ml.datasets.load("sleepstudy").copy()
    frame["x"] = np.random.default_rng(0).normal(size=len(frame))
    frame.loc[[3, 50, 100], "x"] = np.nan
    frame.loc[[7, 60], "Reaction"] = np.nan
    model = ml.Model("Reaction ~ Days + x + (1 | Subject)", frame, missing="model")
    return frame, model.fit(**SETTINGS)


def test_loaded_missing_model_fit_predicts(imputed, tmp_path):
    # build_design refused the data's missing values, whatever data= was passed
    frame, fit = imputed
    loaded = ml.load(fit.save(tmp_path / "imputed.nc"))
    for rows in (NEW.assign(x=[0.1, -0.2]), None):  # new rows; the fitted rows
        expected = fit.predict(rows, kind="response", seed=2).values
        got = loaded.predict(rows, kind="response", data=frame, seed=2).values
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(DataError, match="missing values of 'x' are not the fit's"):
        loaded.predict(NEW.assign(x=0.0), data=frame.assign(x=frame["x"].fillna(0.0)))


# --------------------------------------------------------------------------- saving


@pytest.mark.parametrize("fault", [OSError("No space left on device"), KeyboardInterrupt()])
def test_a_failed_save_leaves_the_old_fit_and_no_temporary_file(fit, saved, tmp_path, fault):
    target = Path(shutil.copy(saved, tmp_path / "fit.nc"))

    def half_write(idata, path):
        Path(path).write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(4096))  # the start of a file
        raise fault

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(saved_fits, "_write_netcdf", half_write)
        with pytest.raises(type(fault)):
            fit.save(target)
    assert os.listdir(tmp_path) == ["fit.nc"]
    np.testing.assert_array_equal(ml.load(target).draws("Intercept"), fit.draws("Intercept"))


def test_save_refuses_a_group_load_would_refuse(fit, tmp_path):
    idata = fit.idata.copy()
    idata.add_groups({"predictions": xr.Dataset({"y": (("chain", "draw"), np.zeros((2, 200)))})})
    clone = Fit(idata, fit.spec, fit.info)
    with pytest.raises(MultilevelError, match="'predictions'"):
        clone.save(tmp_path / "fit.nc")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- crafted files


def edited(change: Callable[[h5py.File], None]) -> Callable[[Path, Path], Path]:
    """A maker of a crafted file: a copy of the saved fit, changed in place with h5py."""

    def make(saved: Path, folder: Path) -> Path:
        path = Path(shutil.copy(saved, folder / "crafted.nc"))
        with h5py.File(path, "r+") as file:
            change(file)
        return path

    return make


def spec_edit(change: Callable[[dict], None], key: str = "multilevel_spec"):
    def change_file(file: h5py.File) -> None:
        record = json.loads(file["posterior"].attrs[key])
        change(record)
        file["posterior"].attrs[key] = json.dumps(record)

    return edited(change_file)


def raw_attribute(key: str, text: str):
    return edited(lambda file: file["posterior"].attrs.__setitem__(key, text))


def written(write: Callable[[Path], None]) -> Callable[[Path, Path], Path]:
    def make(saved: Path, folder: Path) -> Path:
        path = folder / "crafted.nc"
        write(path)
        return path

    return make


def truncated(saved: Path, folder: Path) -> Path:
    path = folder / "crafted.nc"
    content = saved.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    return path


def corrupt_chunk(saved: Path, folder: Path) -> Path:
    path = Path(shutil.copy(saved, folder / "crafted.nc"))
    with h5py.File(path, "r") as file:
        offset = file["posterior/Intercept"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as handle:  # the compressed stream's header and first blocks
        handle.seek(offset)
        handle.write(b"\xff" * 64)
    return path


def with_text_variable(saved: Path, folder: Path) -> Path:
    idata = ml.load(saved).idata
    idata.posterior["note"] = (("chain", "draw"), np.full((2, 200), "text"))
    path = folder / "crafted.nc"
    fit = ml.load(saved)
    idata.posterior.attrs.update(
        multilevel_spec=fit.spec.to_json(), multilevel_info=json.dumps(fit.info)
    )
    idata.to_netcdf(str(path))
    return path


def arviz_file(path: Path) -> None:
    az.from_dict(
        posterior={"a": np.zeros((1, 5))}, sample_stats={"diverging": np.zeros((1, 5), bool)}
    ).to_netcdf(str(path))


def nested_settings(record: dict) -> None:
    record["settings"]["chains"] = "2"


CRAFTED = {
    # not a fit at all
    "text": (written(lambda p: p.write_text("Reaction,Days\n1,2\n")), "not a netCDF file"),
    "empty": (written(lambda p: p.write_bytes(b"")), "it is empty"),
    "netcdf3": (
        written(lambda p: xr.Dataset({"x": ("i", [1.0])}).to_netcdf(p, engine="scipy")),
        "netCDF-3",
    ),
    "other netcdf": (
        written(lambda p: xr.Dataset({"x": ("i", [1.0])}).to_netcdf(p, engine="h5netcdf")),
        "holds data ('i') outside the groups a saved fit has",
    ),
    "arviz, not multilevel": (written(arviz_file), "not a fit saved by multilevel"),
    # damaged
    "truncated": (truncated, "damaged or was not written completely"),
    "corrupt chunk": (corrupt_chunk, "'posterior' group cannot be read"),
    # an edited spec
    "spec not json": (raw_attribute("multilevel_spec", "{'formula': "), "not valid JSON"),
    "spec wrong type": (
        spec_edit(lambda s: s.update(columns="Intercept")),
        "`spec.columns` must be a list",
    ),
    "spec missing key": (spec_edit(lambda s: s.pop("family")), "lacks the key `spec.family`"),
    "spec extra key": (spec_edit(lambda s: s.update(run="id")), "unknown keys in `spec`: 'run'"),
    "spec unknown family": (spec_edit(lambda s: s.update(family="gaussianx")), "unknown family"),
    "spec unknown prior": (
        spec_edit(lambda s: s["priors"][0][1].update(type="Evil")),
        "names the prior 'Evil'",
    ),
    "spec prior argument": (
        spec_edit(lambda s: s["priors"][0][1].update(sigma=True)),
        "must be a finite number",
    ),
    "spec level type": (
        spec_edit(lambda s: s["terms"][0].update(levels=list(range(18)))),
        "`spec.terms[0].levels[0]` must be text",
    ),
    "spec response": (spec_edit(lambda s: s.update(response="Days")), "does not hold together"),
    "spec levels": (
        spec_edit(lambda s: s["terms"][0].update(levels=s["terms"][0]["levels"][:-1])),
        "posterior/Intercept|Subject has shape (2, 200, 18)",
    ),
    # an edited info
    "info not json": (raw_attribute("multilevel_info", "[1, 2"), "info is not valid JSON"),
    "info wrong type": (spec_edit(nested_settings, "multilevel_info"), "chains must be int"),
    "info missing key": (
        spec_edit(lambda i: i.pop("timing"), "multilevel_info"),
        "info lacks 'timing'",
    ),
    # an edited structure
    "unexpected group": (
        edited(lambda f: f.create_group("evil").create_dataset("x", data=[1.0])),
        "holds the group 'evil', which is not one a saved fit has",
    ),
    "nested group": (edited(lambda f: f["posterior"].create_group("inner")), "nested group"),
    "external link": (
        edited(lambda f: f["posterior"].__setitem__("ext", h5py.ExternalLink("/etc/hosts", "/"))),
        "is a link (ExternalLink)",
    ),
    "compound values": (
        edited(lambda f: f["posterior"].create_dataset("c", data=np.zeros(3, dtype="f8,i4"))),
        "not numbers or text",
    ),
    "plugin filter": (
        edited(
            lambda f: f["posterior"].create_dataset(
                "b",
                shape=(4,),
                dtype="f8",
                chunks=(4,),
                compression=32001,
                allow_unknown_filter=True,
            )  # fmt: skip
        ),
        "would be loaded as plugins",
    ),
    "text variable": (with_text_variable, "posterior/note holds"),
    "missing variable": (edited(lambda f: f["posterior"].__delitem__("sigma")), "lacks 'sigma'"),
}


@pytest.fixture(scope="module")
def new_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("new") / "new.csv"
    NEW.to_csv(path, index=False)
    return path


def expect_cli_error(argv: list[str]) -> str:
    """Exit status 2, nothing on stdout, one ``error:`` line and no traceback."""
    status, out, err = run_main(argv)
    assert status == 2, err
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_file_is_refused_with_one_clear_message(case, saved, new_csv, tmp_path):
    make, expected = CRAFTED[case]
    path = make(saved, tmp_path)
    with pytest.raises(FitFileError) as raised:
        ml.load(path)
    message = str(raised.value)
    assert message.startswith(f"Cannot read the saved fit {str(path)!r}: ")
    assert expected in message and "\n" not in message
    for argv in (
        ["loo", str(path)],
        ["predict", str(path), str(new_csv)],
        ["compare", f"good={saved}", f"bad={path}"],
    ):
        assert expected in expect_cli_error(argv)


def test_a_formula_that_runs_code_is_refused_at_load(saved, data, new_csv, tmp_path):
    marker = tmp_path / "MARKER"
    payload = f"I(__import__('os').system('touch {marker}'))"
    path = spec_edit(lambda s: s.update(formula=f"Reaction ~ Days + {payload} + (1 | Subject)"))(
        saved, tmp_path
    )
    try:
        loaded = ml.load(path)
    except MultilevelError as exc:
        assert str(path) in str(exc) and "formula" in str(exc)
    else:  # had it loaded, using it must still not run the payload
        with contextlib.suppress(Exception):
            loaded.predict(NEW, data=data)
        assert not marker.exists()
        pytest.fail("a saved fit whose formula runs code was loaded")
    data_csv = tmp_path / "data.csv"
    data.to_csv(data_csv, index=False)
    for argv in (
        ["loo", str(path)],
        ["predict", str(path), str(new_csv), "--data", str(data_csv)],
        ["compare", f"good={saved}", f"bad={path}"],
    ):
        assert "formula" in expect_cli_error(argv)
    assert not marker.exists()
