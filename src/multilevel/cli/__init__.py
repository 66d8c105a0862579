"""The ``multilevel`` command: fit, describe and list data sets from a shell.

The command is a thin layer over the Python API: it parses arguments, calls
:class:`multilevel.Model` and friends, prints, and exits. Errors a user can act on
(:class:`multilevel.errors.MultilevelError`, unreadable files) are printed as one
``error: ...`` message without a traceback and exit with status 2, like usage errors.

Exit status: 0 done; 2 bad input; 3 ``multilevel fit`` ran but the fit did not converge
(its outputs are still written; ``--allow-unconverged`` exits 0); 1 ``multilevel sbc``
found the ranks not uniform; 130 interrupted.

The package: ``main`` (``main()``, the parser skeleton), ``io`` (files in and out, exit
statuses, errors and warnings as printed), ``model_options`` and ``sampler_options`` (the
options shared by the commands that build and fit a model), and the commands by kind:
``model_commands`` (fit, describe, datasets), ``workflow_commands`` (pooling,
prior-check, recover, sbc), ``fit_commands`` (predict, loo, compare on saved fits).

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

from multilevel.cli.io import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_CALIBRATED,
    EXIT_NOT_CONVERGED,
    EXIT_OK,
    CliError,
    read_data,
    reported_warnings,
)
from multilevel.cli.main import build_parser, main, run, version

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_CALIBRATED",
    "EXIT_NOT_CONVERGED",
    "EXIT_OK",
    "CliError",
    "build_parser",
    "main",
    "read_data",
    "reported_warnings",
    "run",
    "version",
]
