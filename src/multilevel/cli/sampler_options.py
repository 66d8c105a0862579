"""The sampler options of the commands that fit (``--chains``, ``--warmup``, ``--draws``,
``--seed``, ``--target-accept``, ``--max-tree-depth``, ``--method``, ``--quiet``).

Each flag is a keyword of :meth:`multilevel.Model.fit`. A flag left unset is not passed,
so the library's own defaults apply, and the help text shows them, read from the
signature.
"""

from __future__ import annotations

import argparse
import inspect

# CLI flag (underscores for dashes) -> the type of the keyword of Model.fit.
FIT_OPTIONS = {
    "chains": int,
    "warmup": int,
    "draws": int,
    "seed": int,
    "target_accept": float,
    "max_tree_depth": int,
    "method": str,
}


def sampler_parser() -> argparse.ArgumentParser:
    """A parent parser (``parents=[sampler_parser()]``) with the sampler options.

    Building it imports the model (to read the defaults of ``Model.fit``).

    Returns
    -------
    argparse.ArgumentParser
        Without ``--help``; its options are read by :func:`sampler_options`.

    Examples
    --------
    >>> commands.add_parser("fit", parents=[sampler_parser()])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(add_help=False)
    defaults = _fit_defaults()
    for name, kind in FIT_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(
            flag,
            type=kind,
            default=None,
            metavar={float: "X", int: "N"}.get(kind, "NAME"),
            help=f"default {defaults[name]}",
        )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def sampler_options(args: argparse.Namespace) -> dict:
    """The keywords of :meth:`multilevel.Model.fit` that ``args`` set (unset ones left out).

    Examples
    --------
    >>> model.fit(progress=not args.quiet, **sampler_options(args))  # doctest: +SKIP
    """
    return {k: getattr(args, k) for k in FIT_OPTIONS if getattr(args, k) is not None}


def _fit_defaults() -> dict:
    from multilevel.model import Model

    params = inspect.signature(Model.fit).parameters
    return {k: params[k].default for k in FIT_OPTIONS}
