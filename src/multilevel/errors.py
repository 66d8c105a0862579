"""Errors a user can act on. The CLI prints these without a traceback and exits 2."""


class MultilevelError(Exception):
    """Base class for errors caused by the user's input (formula, data, priors, options)."""


class FormulaError(MultilevelError, ValueError):
    """The formula cannot be parsed or uses an unsupported construct."""


class DataError(MultilevelError, ValueError):
    """The data does not fit the model: missing columns, bad values, wrong types."""


class PriorError(MultilevelError, ValueError):
    """A prior is unknown, misspelled, or not allowed."""


class FitFileError(MultilevelError, ValueError):
    """A saved fit cannot be read: not a file ``Fit.save`` wrote, or damaged or edited."""


class OptionError(MultilevelError, ValueError):
    """A sampler or workflow option (seed, chains, draws, target_accept, ...) is invalid."""
