"""The sampler options of the commands that fit (``--chains``, ``--warmup``, ``--draws``,
``--seed``, ``--target-accept``, ``--max-tree-depth``, ``--method``, ``--quiet``).

Each flag is a keyword of :meth:`multilevel.Model.fit`. A flag left unset is not passed,
so the library's own defaults apply, and the help text shows them, read from
:data:`multilevel.options.FIT_DEFAULTS` (light: building the parser imports no model).
"""

from __future__ import annotations

import argparse

from multilevel.options import FIT_DEFAULTS, METHODS


def sampler_parser(**defaults) -> argparse.ArgumentParser:
    """A parent parser (``parents=[sampler_parser()]``) with the sampler options.
    ``defaults`` (e.g. ``chains=2``) are a command's own defaults where they differ from
    ``Model.fit``'s, for the help text (the command applies them itself).

    Returns
    -------
    argparse.ArgumentParser
        Without ``--help``; its options are read by :func:`sampler_options`.

    Examples
    --------
    >>> commands.add_parser("fit", parents=[sampler_parser()])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(add_help=False)
    for name, default in {**FIT_DEFAULTS, **defaults}.items():
        flag = "--" + name.replace("_", "-")
        kind = type(default)  # int, float or str: what the flag's value is read as
        parser.add_argument(
            flag,
            type=kind,
            default=None,
            metavar={float: "X", int: "N"}.get(kind, "NAME"),
            help=f"{'/'.join(METHODS)}; default {default}"
            if name == "method"
            else f"default {default}",
        )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def sampler_options(args: argparse.Namespace) -> dict:
    """The keywords of :meth:`multilevel.Model.fit` that ``args`` set (unset ones left out).

    Examples
    --------
    >>> model.fit(progress=not args.quiet, **sampler_options(args))  # doctest: +SKIP
    """
    return {k: getattr(args, k) for k in FIT_DEFAULTS if getattr(args, k) is not None}
