"""Import ArviZ once, without its refactor announcement on every run of our CLI."""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
    import arviz as az

__all__ = ["az"]
