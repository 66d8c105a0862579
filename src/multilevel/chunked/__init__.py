"""Sufficient statistics of a Gaussian model with one grouping factor, from data that
never has to fit in memory.

The collapsed Gaussian sampler (:mod:`multilevel.backends.gaussian_collapsed`) needs
only cross-products per group: X'X, Z_j'Z_j, Z_j'X_j, Z_j'e_j, e'e and a few totals.
Those are sums over rows, so they can be accumulated chunk by chunk from a Parquet file
or directory, a sequence of pandas DataFrames, or a Dask DataFrame (reduced where the
data lives; only per-group arrays travel). Memory grows with the chunk size and the
number of groups, not with the number of rows.

The result equals ``sufficient_statistics(build_design(...))`` on the concatenated data,
and a :class:`DataSummary` carries what default priors and the model's structure need.

Modules, from the bottom: ``sums`` (pure per-group sums, merging, the statistics from
them; also the in-memory sampler's), ``summary`` (DataSummary), ``analysis`` (which
formulas can be read in chunks), ``sources`` (I/O: Parquet, DataFrames, Dask), ``plan``
(formulaic specs from the global levels; one chunk's sums), ``passes`` (the two passes).
"""

from multilevel.chunked.passes import chunked_statistics
from multilevel.chunked.sources import CLUSTER_HINT
from multilevel.chunked.summary import BlockSummary, DataSummary

__all__ = ["CLUSTER_HINT", "BlockSummary", "DataSummary", "chunked_statistics"]
