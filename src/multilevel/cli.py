"""The ``multilevel`` command: fit, describe and list data sets from a shell.

The command is a thin layer over the Python API: it parses arguments, calls
:class:`multilevel.Model` and friends, prints, and exits. Errors a user can act on
(:class:`multilevel.errors.MultilevelError`, unreadable files) are printed as one
``error: ...`` message without a traceback and exit with status 2, like usage errors.

Exit status: 0 done; 2 bad input; 3 ``multilevel fit`` ran but the fit did not converge
(its outputs are still written; ``--allow-unconverged`` exits 0); 1 ``multilevel sbc``
found the ranks not uniform; 130 interrupted.

Examples
--------
.. code-block:: console

    $ multilevel datasets
    $ multilevel describe sleepstudy "Reaction ~ Days + (Days | Subject)"
    $ multilevel fit sleepstudy "Reaction ~ Days + (Days | Subject)" \\
          --prior "sd=HalfNormal(50)" --chains 4 --json fit.json --save fit.nc
    $ multilevel predict fit.nc new.csv --data sleepstudy --kind response --out pred.csv
    $ multilevel loo fit.nc --json loo.json
    $ multilevel compare partial=partial.nc complete=complete.nc --plot compare.png
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import inspect
import json
import math
import os
import shlex
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from multilevel import interrupt
from multilevel.atomic_write import write_atomically
from multilevel.errors import DataError, MultilevelError

# pandas and the model (JAX: seconds to import) are imported where a command needs
# them, so that `multilevel --version` and usage errors answer at once.
if TYPE_CHECKING:
    import pandas as pd

    from multilevel.model import Model
    from multilevel.priors import Prior

__all__ = ["main"]

EXIT_OK = 0
EXIT_ERROR = 2  # the same status argparse uses for usage errors
EXIT_INTERRUPTED = 130
EXIT_NOT_CALIBRATED = 1  # `multilevel sbc`: ran, but the ranks are not uniform
EXIT_NOT_CONVERGED = 3  # `multilevel fit`: ran, but the fit did not converge

PARQUET_SUFFIXES = {".parquet", ".pq"}
TSV_SUFFIXES = {".tsv", ".tab"}

# Sampler options: CLI flag -> keyword of Model.fit. Unset flags are not passed, so the
# library's own defaults apply (and the help text shows them, read from the signature).
FIT_OPTIONS = {
    "chains": int,
    "warmup": int,
    "draws": int,
    "seed": int,
    "target_accept": float,
    "max_tree_depth": int,
    "method": str,
}


class CliError(MultilevelError):
    """A problem with the command line's inputs or outputs (files), reported like any other."""


# --------------------------------------------------------------------------- inputs


def read_data(source: str) -> pd.DataFrame:
    """A CSV/TSV or Parquet file, or else a built-in data set of that name.

    An existing file wins over a built-in data set of the same name.
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


def parse_priors(items: list[str] | None) -> dict[str, Prior] | None:
    """``["sd=HalfNormal(1)", "Days=Normal(0, 10)"]`` -> ``{"sd": HalfNormal(1), ...}``."""
    from multilevel.priors import parse_prior

    if not items:
        return None
    priors: dict[str, Prior] = {}
    for item in items:
        key, prior_text = _split_prior(item)
        if key in priors:
            raise CliError(f"--prior {key!r} is given twice; give each parameter one prior.")
        priors[key] = parse_prior(prior_text)
    return priors


def _split_prior(item: str) -> tuple[str, str]:
    # Split at the first `=` outside parentheses, so that both `sd(Days|Subject)=...`
    # and keyword arguments such as `Normal(mu=0, sigma=10)` are read correctly.
    depth = 0
    for i, ch in enumerate(item):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "=" and depth == 0:
            key, text = item[:i].strip(), item[i + 1 :].strip()
            if key and text:
                return key, text
            break
    raise CliError(
        f"Cannot read --prior {item!r}; write it as KEY=PRIOR, e.g. 'sd=HalfNormal(1)' "
        "or 'Days=Normal(0, 10)'."
    )


def load_fit(path: str, argument: str | None = None):
    """A fit saved with ``multilevel fit --save`` (or ``fit.save``); ``argument`` (e.g.
    ``partial=partial.nc``) starts the error message when given."""
    from multilevel.fit import load

    where = f"{argument}: " if argument else ""
    try:
        return load(path)
    except MultilevelError as exc:  # no such file, a folder, not (or no longer) a fit
        raise CliError(f"{where}{exc}") from None


def load_scored_fit(path: str, argument: str | None = None):
    """A saved fit that stores its pointwise log-likelihood, which LOO and WAIC need: a
    saved fit keeps no data to compute it from."""
    from multilevel.evaluation import MAX_STORED_VALUES

    fit = load_fit(path, argument)
    if "log_likelihood" in fit.idata.groups():
        return fit
    where = f"{argument}: " if argument else ""
    family = "" if fit.spec.family == "gaussian" else f" --family {fit.spec.family}"
    raise CliError(
        f"{where}The saved fit {path!r} has no pointwise log-likelihood, which LOO and WAIC "
        "score, and a saved fit keeps no data to compute it from. Fits store it unless made "
        f"with log_likelihood=False or larger than {MAX_STORED_VALUES:.0e} values (chains x "
        "draws x rows). Refit with it stored and save again: multilevel fit DATA "
        f"{shlex.quote(fit.spec.formula)}{family} --save FILE, or in Python "
        "ml.Model(formula, data).fit(log_likelihood=True).save(FILE)."
    )


def parse_named_fits(items: list[str]) -> dict[str, str]:
    """``["partial=p.nc", "complete=c.nc"]`` -> ``{"partial": "p.nc", ...}``, two or more."""
    fits: dict[str, str] = {}
    for item in items:
        name, sep, path = (part.strip() for part in item.partition("="))
        if not (sep and name and path):
            raise CliError(
                f"Cannot read the fit {item!r}; write each fit as NAME=PATH, e.g. "
                "partial=partial.nc."
            )
        if name in fits:
            raise CliError(
                f"The name {name!r} is given twice ({name}={fits[name]} and {item}); "
                "give each fit its own name."
            )
        fits[name] = path
    if len(fits) < 2:
        raise CliError(
            f"compare needs two or more fits, got {len(fits)} ({', '.join(items)}): e.g. "
            "multilevel compare partial=partial.nc complete=complete.nc."
        )
    return fits


def build_model(args: argparse.Namespace) -> Model:
    from multilevel.model import Model

    data = read_data(args.data)
    return Model(
        args.formula,
        data,
        family=args.family,
        link=args.link,
        priors=parse_priors(args.prior),
        centered=args.centered,
        missing=args.missing,
    )


# --------------------------------------------------------------------------- outputs


@contextlib.contextmanager
def reported_warnings() -> Iterator[None]:
    """Record warnings raised inside and print each once to stderr as ``Warning: ...``.

    They are printed even when the block fails, before the error message. A warning the
    block has printed already (a fit's summary lists its convergence warnings) is not
    printed again.
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


def _finite(x) -> float | int | None:
    """A JSON-safe number: NaN and infinities (e.g. R-hat of a constant) become null."""
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        return x
    x = float(x)
    return x if math.isfinite(x) else None


def fit_report(fit) -> dict:
    """The ``--json`` document: parameters, diagnostics, timing and the model."""
    table = fit.summary()
    d = fit.diagnostics
    return {
        "parameters": {
            str(name): {col: _finite(row[col]) for col in table.columns}
            for name, row in table.iterrows()
        },
        "diagnostics": {
            "converged": bool(d.converged),
            "divergences": int(d.divergences),
            "max_r_hat": _finite(d.max_r_hat),
            "min_ess_bulk": _finite(d.min_ess_bulk),
        },
        "timing": {k: _finite(fit.timing[k]) for k in ("compile_s", "sampling_s", "total_s")},
        "model": {
            "formula": fit.spec.formula,
            "family": fit.spec.family,
            "link": fit.spec.link,
            "method": fit.info["method"],
        },
    }


def elpd_report(result) -> dict:
    """The ``loo --json`` document: the numbers of an ``ELPDResult``."""
    report = {
        "method": result.method,
        "elpd": _finite(result.elpd),
        "se": _finite(result.se),
        "p": _finite(result.p),
        "n_params": result.n_params,
        "n_obs": result.n_obs,
        "n_samples": result.n_samples,
    }
    if result.method == "loo":
        report["pareto_k"] = dict(result.pareto_k)
    report["warning"] = result.warning
    return report


def format_comparison(table: pd.DataFrame) -> str:
    """A ``compare`` table with a title and a line on how to read it."""
    ic = table.attrs.get("ic", "loo")
    title = "PSIS-LOO" if ic == "loo" else "WAIC"
    return "\n".join(
        [
            f"Fits ranked by {title} (elpd_{ic}: higher predicts new rows better), best first:",
            table.to_string(float_format=lambda x: f"{x:.2f}"),
            "elpd_diff: how far below the best fit, a real difference when it is a few "
            "se_diff or more.",
            "p: effective parameters (n_params: nominal count). weight: stacking weights. "
            "warning: the estimate is unreliable (see the Warning lines).",
        ]
    )


def _check_writable(path: str | None, flag: str) -> None:
    """Fail before sampling, not after, if an output cannot be written."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise CliError(f"{flag} {path!r} is a directory; give a file name.")
    parent = target.parent
    if not parent.is_dir():
        raise CliError(f"{flag} {path!r}: the folder {str(parent)!r} does not exist.")


def _write(path: str, flag: str, write) -> None:
    """``write(temporary)`` into a new file beside ``path``, then rename it over ``path``:
    a file already there is replaced only by a complete one, and an error, Ctrl-C or a
    crash while writing leaves nothing half-written (the temporary file is removed). The
    temporary name ends in ``path``'s suffix: writers such as matplotlib read the format
    from it."""
    try:
        write_atomically(path, lambda temporary: write(str(temporary)))
    except OSError as exc:
        raise CliError(f"Cannot write {flag} {path!r}: {exc.strerror or exc}") from None


def _write_json(path: str | None, report: dict) -> None:
    if path is not None:
        text = json.dumps(report, indent=2, allow_nan=False)
        _write(path, "--json", lambda temporary: Path(temporary).write_text(text + "\n"))


# --------------------------------------------------------------------------- commands


def cmd_fit(args: argparse.Namespace) -> int:
    _check_writable(args.json, "--json")
    _check_writable(args.save, "--save")
    with reported_warnings():
        model = build_model(args)
        fit = model.fit(progress=not args.quiet, **_sampler_options(args))
        print(fit)
    _write_json(args.json, fit_report(fit))
    if args.save is not None:
        _write(args.save, "--save", fit.save)
    if not fit.diagnostics.converged and not args.allow_unconverged:
        # outputs are written (to look into the failure); the status tells scripts
        print(
            f"not converged: exit status {EXIT_NOT_CONVERGED} (the verdict is the first "
            "lines above); --allow-unconverged exits 0.",
            file=sys.stderr,
        )
        return EXIT_NOT_CONVERGED
    return EXIT_OK


def _sampler_options(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in FIT_OPTIONS if getattr(args, k) is not None}


def _save_figure(figure_path: str | None, make_figure) -> None:
    if figure_path is not None:
        _write(figure_path, "--plot", make_figure)
        print(f"\nPlot written to {figure_path}")


def _save_table(table_path: str | None, table: pd.DataFrame) -> None:
    if table_path is not None:
        _write(table_path, "--csv", table.to_csv)


def cmd_pooling(args: argparse.Namespace) -> int:
    from multilevel.workflow.pooling import compare_pooling

    for path, flag in ((args.plot, "--plot"), (args.csv, "--csv")):
        _check_writable(path, flag)
    with reported_warnings():
        comparison = compare_pooling(
            args.formula,
            read_data(args.data),
            family=args.family,
            link=args.link,
            priors=parse_priors(args.prior),
            missing=args.missing,
            progress=not args.quiet,
            **_sampler_options(args),
        )
        print(comparison)
    _save_table(args.csv, comparison.table)
    _save_figure(args.plot, lambda path: comparison.plot_shrinkage(path))
    return EXIT_OK


def cmd_prior_check(args: argparse.Namespace) -> int:
    _check_writable(args.plot, "--plot")
    with reported_warnings():
        model = build_model(args)
        check = model.sample_prior_predictive(n=args.n, seed=args.seed, plausible=args.plausible)
        print(check)
    _save_figure(args.plot, lambda path: check.plot(path))
    return EXIT_OK


def _parse_truth(items: list[str] | None, data: pd.DataFrame) -> dict:
    """``--truth name=value`` pairs; without them, the data's own documented truth."""
    if not items:
        truth = data.attrs.get("truth")
        if truth is None:
            raise CliError(
                "Give the true parameter values with --truth NAME=VALUE (repeatable), "
                "e.g. --truth 'Intercept=3.5' --truth 'sigma=0.5'."
            )
        return dict(truth)
    truth = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            truth[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise CliError(f"Cannot read --truth {item!r}; write it as NAME=NUMBER.")
    return truth


def cmd_recover(args: argparse.Namespace) -> int:
    from multilevel.workflow.recover import recover

    for path, flag in ((args.plot, "--plot"), (args.csv, "--csv")):
        _check_writable(path, flag)
    with reported_warnings():
        model = build_model(args)
        truth = _parse_truth(args.truth, model.data)
        result = recover(
            model,
            truth,
            n_reps=args.reps,
            progress=not args.quiet,
            **_sampler_options(args),
        )
        print(result)
    _save_table(args.csv, result.table)
    _save_figure(args.plot, lambda path: result.plot(path))
    return EXIT_OK


def _cluster_client(address: str | None):
    """A Dask client for ``--cluster ADDRESS`` (Dask is an optional extra)."""
    if address is None:
        return None
    try:
        from distributed import Client
    except ImportError:
        raise CliError("--cluster needs Dask: pip install 'multilevel[cluster]'.") from None
    try:
        return Client(address, timeout="10s")
    except OSError as exc:
        raise CliError(f"Cannot reach the Dask scheduler at {address!r}: {exc}") from None


def cmd_sbc(args: argparse.Namespace) -> int:
    from multilevel.workflow.sbc import sbc

    for path, flag in ((args.plot, "--plot"), (args.csv, "--csv")):
        _check_writable(path, flag)
    options = _sampler_options(args)
    options.setdefault("chains", 2)  # SBC needs many cheap fits
    client = _cluster_client(args.cluster)
    try:
        with reported_warnings():
            result = sbc(
                build_model(args),
                n_sims=args.sims,
                processes=args.processes,
                client=client,
                path=args.resume_dir,
                progress=not args.quiet,
                **options,
            )
            print(result)
    finally:
        if client is not None:
            client.close()
    _save_table(args.csv, result.ranks)
    _save_figure(args.plot, lambda path: result.plot(path))
    return EXIT_OK if result.passed() else EXIT_NOT_CALIBRATED


def cmd_predict(args: argparse.Namespace) -> int:
    _check_writable(args.out, "--out")
    fit = load_fit(args.fit)
    newdata = read_data(args.newdata)
    original = read_data(args.data) if args.data is not None else None
    with reported_warnings():
        prediction = fit.predict(
            newdata,
            kind=args.kind,
            groups=args.groups,
            seed=args.seed,
            draws=args.draws,
            data=original,
        )
        table = prediction.summary()
        print(prediction)
        print()
        print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    if args.out is not None:
        _write(args.out, "--out", lambda temporary: table.to_csv(temporary, index=False))
    return EXIT_OK


def cmd_loo(args: argparse.Namespace) -> int:
    _check_writable(args.json, "--json")
    fit = load_scored_fit(args.fit)
    with reported_warnings():
        result = fit.waic() if args.waic else fit.loo()
        print(result)
    _write_json(args.json, elpd_report(result))
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    for path, flag in ((args.plot, "--plot"), (args.csv, "--csv")):
        _check_writable(path, flag)
    from multilevel.evaluation import compare, plot_compare

    paths = parse_named_fits(args.fits)
    fits = {name: load_scored_fit(path, f"{name}={path}") for name, path in paths.items()}
    with reported_warnings():
        table = compare(fits, ic=args.ic)
        print(format_comparison(table))
    _save_table(args.csv, table)
    _save_figure(args.plot, lambda path: plot_compare(table, path))
    return EXIT_OK


def cmd_describe(args: argparse.Namespace) -> int:
    with reported_warnings():
        model = build_model(args)
        print(model.spec.describe())
        if model.missing.counts:
            print(f"Missing data: {model.missing}")
    return EXIT_OK


def cmd_datasets(args: argparse.Namespace) -> int:
    from multilevel import datasets

    if args.name is not None:
        print(datasets.describe(args.name))
        return EXIT_OK
    names = datasets.names()
    width = max(map(len, names))
    for name in names:
        first = datasets.describe(name).splitlines()[0]
        # The first line repeats the name ("radon: 919 rows, 5 columns."); show it once.
        first = first.removeprefix(f"{name}: ")
        print(f"{name:<{width}}  {first}")
    print("\nMore about one: multilevel datasets NAME")
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def version() -> str:
    """The installed package's version, read without importing the package's modules."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("multilevel")
    except PackageNotFoundError:  # running from a source tree that is not installed
        from multilevel import __version__

        return __version__


def _fit_defaults() -> dict:
    from multilevel.model import Model

    params = inspect.signature(Model.fit).parameters
    return {k: params[k].default for k in FIT_OPTIONS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multilevel",
        description="Bayesian multilevel regression with lme4-style formulas (NUTS on JAX).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    model_args = argparse.ArgumentParser(add_help=False)
    model_args.add_argument(
        "data",
        metavar="DATA",
        help="a CSV file, a Parquet file (.parquet, .pq) or a built-in data set name "
        "(see `multilevel datasets`)",
    )
    model_args.add_argument(
        "formula", metavar="FORMULA", help="lme4-style formula, e.g. 'y ~ x + (1 + x | g)'"
    )
    model_args.add_argument(
        "--family",
        default="gaussian",
        help="gaussian (default), student_t, bernoulli, binomial, poisson, negative_binomial, gamma, lognormal, beta",
    )
    model_args.add_argument("--link", default=None, help="link function (default: canonical)")
    model_args.add_argument(
        "--prior",
        action="append",
        metavar="KEY=PRIOR",
        help="prior by parameter or class (Intercept, b, sd, cor, sigma), e.g. "
        "'sd=HalfNormal(1)' or 'Days=Normal(0, 10)'; repeatable",
    )
    model_args.add_argument(
        "--centered",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sample group effects centred (--centered) or as scaled standard normals "
        "(--no-centered); default: chosen from the data",
    )
    model_args.add_argument(
        "--missing",
        choices=("error", "drop", "model"),
        default="error",
        help="missing values: refuse them (default), drop their rows (reported), or model "
        "them (responses predicted, numeric predictors imputed in the sampler)",
    )

    sampler_args = argparse.ArgumentParser(add_help=False)
    defaults = _fit_defaults()
    for name, kind in FIT_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        sampler_args.add_argument(
            flag,
            type=kind,
            default=None,
            metavar={float: "X", int: "N"}.get(kind, "NAME"),
            help=f"default {defaults[name]}",
        )
    sampler_args.add_argument("--quiet", action="store_true", help="no progress bar")

    fit = commands.add_parser(
        "fit",
        parents=[model_args, sampler_args],
        help="fit a model and print its summary",
        description="Fit a model with NUTS and print an lme4-like summary. Exit status: "
        "0 done; 2 bad input (nothing fitted); 3 the fit did not converge (its summary "
        "starts with why; --json and --save are still written); 130 interrupted.",
    )
    fit.add_argument("--json", metavar="FILE", help="write estimates and diagnostics as JSON")
    fit.add_argument(
        "--allow-unconverged",
        action="store_true",
        help="exit 0 even when the fit did not converge (default: exit 3)",
    )
    fit.add_argument(
        "--save", metavar="FILE", help="save the fit (netCDF); read it with multilevel.load"
    )
    fit.set_defaults(handler=cmd_fit)

    pooling = commands.add_parser(
        "pooling",
        parents=[model_args, sampler_args],
        help="complete, no and partial pooling side by side, with shrinkage",
        description="Fit the complete-, no- and partial-pooling variants of a one-factor "
        "model; print per-group estimates, shrinkage and LOO of each.",
    )
    pooling.add_argument("--plot", metavar="FILE", help="shrinkage plot (.png or .svg)")
    pooling.add_argument("--csv", metavar="FILE", help="write the per-group table as CSV")
    pooling.set_defaults(handler=cmd_pooling)

    prior_check = commands.add_parser(
        "prior-check",
        parents=[model_args],
        help="prior predictive check: what outcomes do the priors imply?",
        description="Simulate data sets from the priors and compare them with the data; "
        "warn, naming the prior, when most simulated outcomes are implausible.",
    )
    prior_check.add_argument("--n", type=int, default=500, help="simulated data sets (500)")
    prior_check.add_argument("--seed", type=int, default=0, help="default 0")
    prior_check.add_argument(
        "--plausible",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="plausible range of the outcome (default: from the data; see docs)",
    )
    prior_check.add_argument("--plot", metavar="FILE", help="write the plot (.png or .svg)")
    prior_check.set_defaults(handler=cmd_prior_check)

    recover_cmd = commands.add_parser(
        "recover",
        parents=[model_args, sampler_args],
        help="fake-data simulation and parameter recovery",
        description="Simulate data from known parameter values, refit, and report "
        "coverage of the 90% intervals and z-scores.",
    )
    recover_cmd.add_argument(
        "--truth",
        action="append",
        metavar="NAME=VALUE",
        help="true value of a parameter (repeatable; all hyper-parameters needed); "
        "default: the data set's documented truth (e.g. cafe)",
    )
    recover_cmd.add_argument("--reps", type=int, default=20, help="replications (20)")
    recover_cmd.add_argument("--plot", metavar="FILE", help="write the plot (.png or .svg)")
    recover_cmd.add_argument("--csv", metavar="FILE", help="write the per-replication table")
    recover_cmd.set_defaults(handler=cmd_recover)

    sbc_cmd = commands.add_parser(
        "sbc",
        parents=[model_args, sampler_args],
        help="simulation-based calibration of the model and sampler",
        description="Draw parameters and data from the priors, refit, and test that the "
        "ranks of the truths among the posterior draws are uniform. Exits 1 when they "
        "are not.",
    )
    sbc_cmd.add_argument("--sims", type=int, default=100, help="simulations (100)")
    sbc_cmd.add_argument(
        "--processes", type=int, default=None, help="worker processes (default: CPUs)"
    )
    sbc_cmd.add_argument(
        "--cluster", metavar="ADDRESS", help="run on a Dask scheduler, e.g. tcp://host:8786"
    )
    sbc_cmd.add_argument(
        "--resume-dir", metavar="DIR", help="keep each simulation here; a rerun resumes"
    )
    sbc_cmd.add_argument("--plot", metavar="FILE", help="ECDF-difference plot (.png or .svg)")
    sbc_cmd.add_argument("--csv", metavar="FILE", help="write the ranks as CSV")
    sbc_cmd.set_defaults(handler=cmd_sbc)

    predict = commands.add_parser(
        "predict",
        help="predict new data from a saved fit",
        description="Predict the rows of NEWDATA from a fit saved with `multilevel fit "
        "--save` (or fit.save): per row the mean, sd and 5/50/95% quantiles over the "
        "posterior draws. Levels of a grouping factor the fit never saw get effects drawn "
        "from the fitted population distribution (--groups sample) or zero effects "
        "(--groups population).",
    )
    predict.add_argument("fit", metavar="FIT", help="a saved fit (netCDF)")
    predict.add_argument(
        "newdata", metavar="NEWDATA", help="rows to predict: CSV, Parquet or a built-in data set"
    )
    predict.add_argument(
        "--data",
        metavar="ORIGINAL",
        help="the data the fit was made from: needed, since a saved fit keeps no "
        "covariates and NEWDATA must be encoded like the fitted data",
    )
    predict.add_argument(
        "--kind",
        default="mean",
        choices=["mean", "response", "link"],
        help="mean (default): expected response; response: new observations; link: "
        "linear predictor",
    )
    predict.add_argument(
        "--groups",
        default="sample",
        choices=["sample", "population"],
        help="sample (default): new levels drawn from the population; population: all "
        "group effects zero",
    )
    predict.add_argument("--seed", type=int, default=0, help="default 0")
    predict.add_argument("--draws", type=int, default=None, help="draws per chain (default: all)")
    predict.add_argument("--out", metavar="FILE", help="write the table as CSV")
    predict.set_defaults(handler=cmd_predict)

    loo_cmd = commands.add_parser(
        "loo",
        help="PSIS-LOO (or WAIC) of a saved fit",
        description="Estimate how well a fit saved with `multilevel fit --save` (or "
        "fit.save) predicts new rows, by PSIS-LOO cross-validation on its stored pointwise "
        "log-likelihood: elpd_loo and its se, p_loo (effective parameters) against the "
        "nominal count, and Pareto k counts, naming the rows where PSIS-LOO is unreliable.",
    )
    loo_cmd.add_argument("fit", metavar="FIT", help="a saved fit (netCDF)")
    loo_cmd.add_argument(
        "--waic", action="store_true", help="WAIC instead of PSIS-LOO (cheaper, less robust)"
    )
    loo_cmd.add_argument("--json", metavar="FILE", help="write the numbers as JSON")
    loo_cmd.set_defaults(handler=cmd_loo)

    compare_cmd = commands.add_parser(
        "compare",
        help="rank saved fits of the same data by elpd (PSIS-LOO or WAIC)",
        description="Rank two or more saved fits of the same data by expected log "
        "predictive density (elpd), best first: each fit's elpd and se, its difference to "
        "the best fit with the standard error of that difference, effective and nominal "
        "parameters, and stacking weights.",
    )
    compare_cmd.add_argument(
        "fits",
        metavar="NAME=FIT",
        nargs="+",
        help="a name and a saved fit, e.g. partial=partial.nc; two or more",
    )
    compare_cmd.add_argument(
        "--ic",
        default="loo",
        choices=["loo", "waic"],
        help="loo (default): PSIS-LOO; waic: WAIC",
    )
    compare_cmd.add_argument("--csv", metavar="FILE", help="write the table as CSV")
    compare_cmd.add_argument("--plot", metavar="FILE", help="elpd plot (.png or .svg)")
    compare_cmd.set_defaults(handler=cmd_compare)

    describe = commands.add_parser(
        "describe",
        parents=[model_args],
        help="show every parameter and its prior, without fitting",
        description="Show every parameter of a model with its prior, without fitting.",
    )
    describe.set_defaults(handler=cmd_describe)

    data_sets = commands.add_parser(
        "datasets",
        help="list the built-in data sets, or describe one",
        description="List the built-in data sets, or describe one.",
    )
    data_sets.add_argument("name", metavar="NAME", nargs="?", help="data set to describe")
    data_sets.set_defaults(handler=cmd_datasets)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 2 error, 3 a fit that
    did not converge, 1 an SBC that is not calibrated, 130 interrupted)."""
    if (sys.argv[1:] if argv is None else list(argv))[:1] == ["--version"]:
        print(f"multilevel {version()}")  # before the parser, which imports the model
        return EXIT_OK
    try:
        with interrupt.recorded():  # a Ctrl-C is never lost (see multilevel.interrupt)
            args = build_parser().parse_args(argv)  # exits 2 itself on usage errors
            return args.handler(args)
    except MultilevelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        # Ctrl-C while importing, compiling or sampling: the chains have stopped (after
        # their current chunk) and every output file is whole or absent (``_write``).
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> None:
    """The ``multilevel`` command: ``main()``, then exit with its status. After Ctrl-C
    the process ends at once (``os._exit``) once its message is out: a KeyboardInterrupt
    that strikes while a thread pool starts a worker leaves that idle worker unknown to
    the pool, and Python's exit then waits for it forever (seen in 1 of 10 Ctrl-Cs at the
    start of XLA's first compile). Outputs are whole or absent either way
    (``atomic_write``), so there is nothing left to clean up."""
    status = main()
    if status == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    run()
