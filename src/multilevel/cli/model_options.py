"""The options of every command that builds a model, in one place.

``model_parser()`` declares them (DATA, FORMULA, ``--family``, ``--link``, ``--prior``,
``--centered``, ``--missing``) and ``model_arguments(args)`` turns them into the keyword
arguments of :class:`multilevel.Model`. ``fit``, ``describe``, ``prior-check``,
``recover`` and ``sbc`` build their model with ``build_model(args)``, and ``pooling``
hands the same arguments to :func:`multilevel.compare_pooling`: a new model option is
declared in ``model_parser`` and read in ``model_arguments``, and every one of them has
it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from multilevel.cli.io import CliError, read_data

# The model and the priors (JAX: seconds to import) are imported where a command needs
# them, so that `multilevel --version` and usage errors answer at once.
if TYPE_CHECKING:
    from multilevel.model import Model
    from multilevel.priors import Prior


def model_parser() -> argparse.ArgumentParser:
    """A parent parser (``parents=[model_parser()]``) with the options that build a model.

    Returns
    -------
    argparse.ArgumentParser
        Without ``--help``; its arguments are read by :func:`model_arguments`.

    Examples
    --------
    >>> commands.add_parser("describe", parents=[model_parser()])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "data",
        metavar="DATA",
        help="a CSV file, a Parquet file (.parquet, .pq) or a built-in data set name "
        "(see `multilevel datasets`)",
    )
    parser.add_argument(
        "formula", metavar="FORMULA", help="lme4-style formula, e.g. 'y ~ x + (1 + x | g)'"
    )
    parser.add_argument(
        "--family",
        default="gaussian",
        help="gaussian (default), student_t, skew_normal, exgaussian, bernoulli, binomial, "
        "beta_binomial, poisson, negative_binomial, gamma, lognormal, shifted_lognormal, "
        "exponential, weibull, inverse_gaussian, beta, zero_one_inflated_beta, "
        "zero_inflated_poisson, zero_inflated_negative_binomial, zero_inflated_binomial, "
        "zero_inflated_beta_binomial, hurdle_poisson, hurdle_negative_binomial, "
        "hurdle_gamma, hurdle_lognormal, for ordered categories cumulative, sratio, "
        "cratio, acat, for unordered ones categorical, and multinomial (counts per "
        "category: 'cbind(a, b, c) ~ x') (docs/families.md: links and parameters)",
    )
    parser.add_argument("--link", default=None, help="link function (default: canonical)")
    parser.add_argument(
        "--formula-for",
        action="append",
        metavar="PARAM=FORMULA",
        dest="formula_for",
        help="a formula of its own for a family parameter (distributional regression), "
        "as ml.bf(..., sigma='~ x + (1 | g)'): e.g. 'sigma=~ x + (1 | g)' (log link); a "
        "number fixes it, e.g. 'nu=4'; repeatable",
    )
    parser.add_argument(
        "--prior",
        action="append",
        metavar="KEY=PRIOR",
        help="prior by parameter or class (Intercept, b, sd, cor, sigma), e.g. "
        "'sd=HalfNormal(1)' or 'Days=Normal(0, 10)'; repeatable",
    )
    parser.add_argument(
        "--centered",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sample group effects centred (--centered) or as scaled standard normals "
        "(--no-centered); default: chosen from the data",
    )
    parser.add_argument(
        "--missing",
        choices=("error", "drop", "model"),
        default="error",
        help="missing values: refuse them (default), drop their rows (reported), or model "
        "them (responses predicted, numeric predictors imputed in the sampler)",
    )
    return parser


def model_arguments(args: argparse.Namespace) -> dict:
    """The keyword arguments of :class:`multilevel.Model` that ``args`` ask for.

    Reads the data (a file or a built-in data set) and the priors.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser with :func:`model_parser` among its parents.

    Returns
    -------
    dict
        ``formula``, ``data``, ``family``, ``link``, ``priors``, ``centered``, ``missing``.

    Examples
    --------
    >>> Model(**model_arguments(args))  # doctest: +SKIP
    """
    data = read_data(args.data)
    return {
        "formula": distributional_formula(args.formula, getattr(args, "formula_for", None)),
        "data": data,
        "family": args.family,
        "link": args.link,
        "priors": parse_priors(args.prior),
        "centered": args.centered,
        "missing": args.missing,
    }


def distributional_formula(formula: str, items: list[str] | None):
    """``FORMULA`` alone, or with the ``--formula-for PARAM=FORMULA`` items as
    ``ml.bf(formula, PARAM=FORMULA, ...)`` (a number fixes the parameter).

    Examples
    --------
    >>> distributional_formula("y ~ x", ["sigma=~ x", "nu=4"])  # doctest: +SKIP
    DistributionalFormula(formula='y ~ x', dpars=(('sigma', '~ x'), ('nu', 4.0)))
    """
    if not items:
        return formula
    from multilevel.formula import bf

    dpars: dict[str, str | float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep and "~" in item:  # 'sigma ~ x', as brms writes it
            key, _, rest = item.partition("~")
            key, value = key.strip(), "~" + rest
        if not key.isidentifier() or not value:
            raise CliError(
                f"Cannot read --formula-for {item!r}; write it as PARAM=FORMULA, e.g. "
                "'sigma=~ x + (1 | g)', or PARAM=NUMBER to fix it, e.g. 'nu=4'."
            )
        if key in dpars:
            raise CliError(f"--formula-for {key!r} is given twice; give each parameter one.")
        try:
            dpars[key] = float(value)
        except ValueError:
            dpars[key] = value
    return bf(formula, **dpars)


def build_model(args: argparse.Namespace) -> Model:
    """The :class:`multilevel.Model` that ``args`` describe (see :func:`model_arguments`).

    Examples
    --------
    >>> print(build_model(args).spec.describe())  # doctest: +SKIP
    """
    from multilevel.model import Model

    return Model(**model_arguments(args))


def parse_priors(items: list[str] | None) -> dict[str, Prior] | None:
    """The ``--prior KEY=PRIOR`` items as the ``priors`` of a model.

    Parameters
    ----------
    items : list of str or None
        ``KEY=PRIOR`` texts; None or empty when no ``--prior`` was given.

    Returns
    -------
    dict or None
        Prior by key; None when there are no items (the model's default priors).

    Raises
    ------
    CliError
        An item is not ``KEY=PRIOR``, or a key is given twice.

    Examples
    --------
    >>> parse_priors(["sd=HalfNormal(1)", "Days=Normal(0, 10)"])  # doctest: +SKIP
    {'sd': HalfNormal(1), 'Days': Normal(0, 10)}
    """
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
