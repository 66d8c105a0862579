"""What the command line reads and writes: data and saved fits in; JSON, CSV and plots
out (each file whole or absent); exit statuses; errors printed as one ``error: ...``
line; warnings printed once as ``Warning: ...`` lines.

pandas and the model (JAX: seconds to import) are imported inside the functions that
need them, so that ``multilevel --version`` and usage errors answer at once.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import shlex
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from multilevel import interrupt
from multilevel.atomic_write import write_atomically
from multilevel.errors import DataError, MultilevelError

if TYPE_CHECKING:
    import pandas as pd

    from multilevel.fit import Fit

EXIT_OK = 0
EXIT_ERROR = 2  # the same status argparse uses for usage errors
EXIT_INTERRUPTED = 130
EXIT_NOT_CALIBRATED = 1  # `multilevel sbc`: ran, but the ranks are not uniform
EXIT_NOT_CONVERGED = 3  # `multilevel fit`: ran, but the fit did not converge

PARQUET_SUFFIXES = {".parquet", ".pq"}
TSV_SUFFIXES = {".tsv", ".tab"}


class CliError(MultilevelError):
    """A problem with the command line's inputs or outputs (files), reported like any other."""


# --------------------------------------------------------------------------- errors


def exit_status(command: Callable[[], int]) -> int:
    """Run ``command`` and return its exit status; an error a user can act on is printed
    as one ``error: ...`` line (no traceback) and returns ``EXIT_ERROR``, Ctrl-C returns
    ``EXIT_INTERRUPTED``.

    Parameters
    ----------
    command : callable
        Takes no arguments and returns an exit status. It runs with Ctrl-C recorded (see
        :mod:`multilevel.interrupt`), so that a Ctrl-C is never lost.

    Returns
    -------
    int
        ``command``'s status, ``EXIT_ERROR`` or ``EXIT_INTERRUPTED``.

    Examples
    --------
    >>> exit_status(lambda: EXIT_OK)
    0
    """
    try:
        with interrupt.recorded():
            return command()
    except MultilevelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        # Ctrl-C while importing, compiling or sampling: the chains have stopped (after
        # their current chunk) and every output file is whole or absent (``write_output``).
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


@contextlib.contextmanager
def reported_warnings() -> Iterator[None]:
    """Record warnings raised inside and print each once to stderr as ``Warning: ...``.

    They are printed even when the block fails, before the error message. A warning the
    block has printed already (a fit's summary lists its convergence warnings) is not
    printed again.

    Examples
    --------
    >>> with reported_warnings():  # doctest: +SKIP
    ...     warnings.warn("few rows")
    Warning: few rows
    """
    out = _Recorder(sys.stdout)
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out):
        # Our own warnings (ConvergenceWarning, DesignWarning) are all UserWarnings:
        # show every one, even if an earlier call in the process showed it already.
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            printed = out.text()
            seen: set[tuple[type, str]] = set()
            for w in caught:
                key = (w.category, str(w.message))
                if key not in seen and str(w.message) not in printed:
                    seen.add(key)
                    print(f"Warning: {w.message}", file=sys.stderr)


class _Recorder:
    """A text stream that writes through to ``stream`` and keeps what was written."""

    def __init__(self, stream):
        self._stream = stream
        self._parts: list[str] = []

    def write(self, text: str) -> int:
        self._parts.append(text)
        return self._stream.write(text)

    def text(self) -> str:
        return "".join(self._parts)

    def __getattr__(self, name: str):  # flush, isatty, encoding, ...: the stream's own
        return getattr(self._stream, name)


# --------------------------------------------------------------------------- inputs


def read_data(source: str) -> pd.DataFrame:
    """A CSV/TSV or Parquet file, or else a built-in data set of that name.

    An existing file wins over a built-in data set of the same name.

    Parameters
    ----------
    source : str
        A file path (``.csv``, ``.tsv``/``.tab``, ``.parquet``/``.pq``, compressed CSV)
        or the name of a built-in data set.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    CliError
        The path exists but cannot be read as data.
    multilevel.errors.DataError
        Neither a file nor a data set (close names are suggested), or a CSV header
        repeats a column name.

    Examples
    --------
    >>> read_data("sleepstudy").shape  # doctest: +SKIP
    (180, 3)
    """
    from multilevel import datasets

    path = Path(source)
    if path.is_file():
        return _read_file(path)
    if source in datasets.names():
        return datasets.load(source)
    if path.exists():
        raise CliError(f"Cannot read data {source!r}: it is not a file.")
    close = difflib.get_close_matches(source, datasets.names(), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise DataError(
        f"No file {source!r}, and it is not a built-in data set either.{hint} "
        f"Built-in data sets: {', '.join(datasets.names())}."
    )


def _read_file(path: Path) -> pd.DataFrame:
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in PARQUET_SUFFIXES:
            return pd.read_parquet(path)
        # read_csv infers compression (.csv.gz, ...) from the name by itself.
        sep = "\t" if suffix in TSV_SUFFIXES else ","
        frame = pd.read_csv(path, sep=sep)
        _check_header(path, sep, frame)
        return frame
    except (OSError, ValueError, ImportError, pd.errors.ParserError) as exc:
        if isinstance(exc, MultilevelError):
            raise
        # ValueError covers pandas' EmptyDataError, UnicodeDecodeError and pyarrow's errors.
        reason = str(exc).strip() or type(exc).__name__
        raise CliError(f"Cannot read data file {str(path)!r}: {reason}") from None


def _check_header(path: Path, sep: str, frame: pd.DataFrame) -> None:
    """read_csv renames a repeated column name `x` to `x.1`, and a formula naming `x`
    would silently take the first: refuse repeated names in the header instead."""
    names = [str(c) for c in frame.columns]
    renamed = {n.rsplit(".", 1)[0] for n in names if n.rsplit(".", 1)[-1].isdigit()}
    if not renamed & set(names):  # no `x` beside an `x.1`: nothing was renamed
        return
    import pandas as pd

    header = [str(v) for v in pd.read_csv(path, sep=sep, header=None, nrows=1).iloc[0]]
    repeated = sorted({n for n in header if header.count(n) > 1})
    if repeated:
        listed = ", ".join(
            f"{n!r} (columns {', '.join(str(i + 1) for i, h in enumerate(header) if h == n)})"
            for n in repeated
        )
        raise DataError(
            f"The data file {str(path)!r} has more than one column named {listed}; which "
            "one a formula means is ambiguous. Rename the copies in the file's header."
        )


def load_fit(path: str, argument: str | None = None) -> Fit:
    """A fit saved with ``multilevel fit --save`` (or ``fit.save``).

    Parameters
    ----------
    path : str
        The saved fit (netCDF).
    argument : str, optional
        The command-line argument that named it (e.g. ``partial=partial.nc``); starts the
        error message when given.

    Returns
    -------
    multilevel.Fit

    Raises
    ------
    CliError
        No such file, a folder, or not (or no longer) a fit.

    Examples
    --------
    >>> fit = load_fit("fit.nc")  # doctest: +SKIP
    """
    from multilevel.fit import load

    where = f"{argument}: " if argument else ""
    try:
        return load(path)
    except MultilevelError as exc:  # no such file, a folder, not (or no longer) a fit
        raise CliError(f"{where}{exc}") from None


def load_scored_fit(path: str, argument: str | None = None) -> Fit:
    """A saved fit that stores its pointwise log-likelihood, which LOO and WAIC need: a
    saved fit keeps no data to compute it from.

    Parameters
    ----------
    path, argument : str
        As for :func:`load_fit`.

    Returns
    -------
    multilevel.Fit

    Raises
    ------
    CliError
        As :func:`load_fit`, or the fit stores no log-likelihood (the message says how
        to refit with it).

    Examples
    --------
    >>> fit = load_scored_fit("partial.nc", "partial=partial.nc")  # doctest: +SKIP
    """
    from multilevel.loglik import MAX_SAVED_VALUES

    fit = load_fit(path, argument)
    if "log_likelihood" in fit.idata.groups():
        return fit
    where = f"{argument}: " if argument else ""
    family = "" if fit.spec.family == "gaussian" else f" --family {fit.spec.family}"
    raise CliError(
        f"{where}The saved fit {path!r} has no pointwise log-likelihood, which LOO and WAIC "
        "score, and a saved fit keeps no data to compute it from. Saved fits hold it unless "
        f"made with log_likelihood=False or larger than {MAX_SAVED_VALUES:.0e} values (chains "
        "x draws x rows). Refit and save again: multilevel fit DATA "
        f"{shlex.quote(fit.spec.formula)}{family} --save FILE (up to that size), or in Python "
        "ml.Model(formula, data).fit(log_likelihood=True).save(FILE)."
    )


# --------------------------------------------------------------------------- outputs


def finite(x) -> float | int | None:
    """A JSON-safe number: NaN and infinities (e.g. R-hat of a constant) become null.

    Examples
    --------
    >>> finite(float("nan")) is None, finite(3), finite(1.5)
    (True, 3, 1.5)
    """
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        return x
    x = float(x)
    return x if math.isfinite(x) else None


def check_writable(path: str | None, flag: str) -> None:
    """Fail before sampling, not after, if an output cannot be written.

    Parameters
    ----------
    path : str or None
        The output file; None (the flag was not given) passes.
    flag : str
        The flag that named it (``--json``), for the message.

    Raises
    ------
    CliError
        ``path`` is a folder, or its folder does not exist.

    Examples
    --------
    >>> check_writable(None, "--json")
    """
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise CliError(f"{flag} {path!r} is a directory; give a file name.")
    parent = target.parent
    if not parent.is_dir():
        raise CliError(f"{flag} {path!r}: the folder {str(parent)!r} does not exist.")


def write_output(path: str, flag: str, write: Callable[[str], object]) -> None:
    """``write(temporary)`` into a new file beside ``path``, then rename it over ``path``.

    A file already there is replaced only by a complete one, and an error, Ctrl-C or a
    crash while writing leaves nothing half-written (the temporary file is removed). The
    temporary name ends in ``path``'s suffix: writers such as matplotlib read the format
    from it.

    Parameters
    ----------
    path : str
        The output file.
    flag : str
        The flag that named it, for the error message.
    write : callable
        Writes the output to the path (a str) it is given.

    Raises
    ------
    CliError
        The file cannot be written.

    Examples
    --------
    >>> write_output("table.csv", "--csv", table.to_csv)  # doctest: +SKIP
    """
    try:
        write_atomically(path, lambda temporary: write(str(temporary)))
    except OSError as exc:
        raise CliError(f"Cannot write {flag} {path!r}: {exc.strerror or exc}") from None


def write_json(path: str | None, report: dict) -> None:
    """Write ``report`` as indented JSON to ``path`` (the ``--json`` flag), if given.

    Examples
    --------
    >>> write_json(None, {"elpd": -3.2})
    """
    if path is not None:
        text = json.dumps(report, indent=2, allow_nan=False)
        write_output(path, "--json", lambda temporary: Path(temporary).write_text(text + "\n"))


def write_table(table_path: str | None, table: pd.DataFrame) -> None:
    """Write ``table`` as CSV (with its index) to ``table_path`` (``--csv``), if given.

    Examples
    --------
    >>> write_table(None, table)  # doctest: +SKIP
    """
    if table_path is not None:
        write_output(table_path, "--csv", table.to_csv)


def write_plot(figure_path: str | None, make_figure: Callable[[str], object]) -> None:
    """``make_figure(path)`` writes the plot to ``figure_path`` (``--plot``), if given;
    then say where it is.

    Examples
    --------
    >>> write_plot("shrinkage.png", comparison.plot_shrinkage)  # doctest: +SKIP
    <BLANKLINE>
    Plot written to shrinkage.png
    """
    if figure_path is not None:
        write_output(figure_path, "--plot", make_figure)
        print(f"\nPlot written to {figure_path}")
