"""Where the rows come from: Parquet, pandas DataFrames or a Dask DataFrame, read twice.

Every source is a :class:`ChunkSource`: it names its columns and their dtypes, and runs
the two passes of :func:`multilevel.chunked.chunked_statistics` over its rows:

* ``pass_one``: the distinct values of the grouping and categorical columns (``Levels``);
* ``pass_two``: one partial of sums (``sums``) over all rows, from a :class:`Reduction`
  that turns a chunk into its partial (the plan built from pass one).

Local sources (Parquet, DataFrames) iterate chunks in this process and share one loop
(:class:`RowChunks`); a Dask DataFrame reduces its partitions where they live and sends
back per-group arrays only. :func:`open_source` is the one place that decides which
source the user passed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from multilevel.chunked.sums import mean_y, merge, no_rows, refused
from multilevel.errors import DataError, MultilevelError
from multilevel.progress import on_terminal, progress_bar

CLUSTER_HINT = 'pip install "multilevel[cluster]"'


@dataclass(frozen=True)
class LevelRequest:
    """What pass one reads."""

    factors: tuple[str, ...]  # the grouping factor's columns, e.g. ("county",)
    level_vars: tuple[str, ...]  # columns encoded as categories: their global levels
    used: tuple[str, ...]  # every column the formula uses (for one sample row)
    response: str


@dataclass
class Levels:
    """What pass one found."""

    rows: int
    groups: pd.DataFrame | None  # unique rows of the grouping columns (no missing values)
    values: dict  # level variable -> pd.Series of its unique values
    first_row: pd.DataFrame | None  # one row of the used columns, for formulaic model specs


class Reduction(Protocol):
    """How pass two turns chunks into sums (``multilevel.chunked.plan.Plan`` is one)."""

    @property
    def used(self) -> tuple[str, ...]:
        """The columns to read."""

    @property
    def centre_on(self) -> str | None:
        """The column whose finite mean in the first chunk with rows centres the sums
        (the ``shift``); None: not centred (shift 0)."""

    def partial_sums(self, chunk: pd.DataFrame, shift: float, counts_only: bool = False) -> dict:
        """The partial of one chunk with rows (``counts_only``: counts, no sums)."""


class ChunkSource(ABC):
    """Rows that are read twice, in chunks."""

    names: list[str]  # column names
    dtypes: dict[str, Any]  # column -> pandas or Arrow dtype
    rows: int | None  # the number of rows where known in advance (for progress bars)

    @abstractmethod
    def pass_one(self, request: LevelRequest, progress: bool) -> Levels:
        """Rows, distinct group rows and levels over all the data, and one sample row."""

    @abstractmethod
    def pass_two(self, reduction: Reduction, progress: bool) -> dict:
        """The merged partial of all rows, with the ``shift`` it is centred on.

        Raises
        ------
        DataError
            When the source has no rows.
        """


def open_source(source, chunk_rows: int) -> ChunkSource:
    """The :class:`ChunkSource` for what the user passed.

    Parameters
    ----------
    source
        A path to a Parquet file or directory, a pandas DataFrame (sliced into
        ``chunk_rows``), a list or other re-iterable of DataFrames, a function that
        returns a new iterator of DataFrames on each call, or a Dask DataFrame.
    chunk_rows
        Rows per chunk for Parquet and a DataFrame.

    Raises
    ------
    DataError
        For a one-shot iterator (the data is read twice) or anything else.

    Examples
    --------
    >>> frame = pd.DataFrame({"y": [1.0, 2.0, 3.0], "g": list("aab")})
    >>> [len(c) for c in open_source(frame, 2).chunks(["y"])]
    [2, 1]
    """
    if isinstance(source, str | Path):
        return ParquetSource(Path(source), chunk_rows)
    if isinstance(source, pd.DataFrame):
        frame = source

        def slices() -> Iterator[pd.DataFrame]:
            for start in range(0, max(len(frame), 1), chunk_rows):
                yield frame.iloc[start : start + chunk_rows]

        return FramesSource(slices, len(frame))
    if type(source).__module__.split(".")[0] in ("dask", "dask_expr"):
        return DaskSource(source)
    if callable(source):
        return FramesSource(source, None)
    if isinstance(source, Iterable) and not isinstance(source, str | bytes | dict):
        if iter(source) is source:
            raise DataError(
                "The source is a one-shot iterator, but chunked statistics read the data "
                "twice (levels first, then statistics). Pass a list of DataFrames, or a "
                "function that returns a new iterator of DataFrames on each call."
            )
        rows = sum(len(f) for f in source) if isinstance(source, list | tuple) else None
        return FramesSource(lambda: iter(source), rows)
    raise DataError(
        "The source must be a path to a Parquet file or directory, a pandas DataFrame, a "
        f"list of pandas DataFrames or a Dask DataFrame ({CLUSTER_HINT}); got "
        f"{type(source).__name__}."
    )


# ---------------------------------------------------------------------------------------
# Local sources: chunks iterated in this process.


def _bar(progress: bool, total: int | None, what: str):
    return progress_bar(
        total, f"chunked {what}", unit="rows", show=progress, unit_scale=True, leave=True
    )


def _unique(frames: list) -> Any:
    return pd.concat(frames, ignore_index=True).drop_duplicates(ignore_index=True)


class RowChunks(ChunkSource):
    """A source read chunk by chunk in this process: both passes are loops over chunks."""

    @abstractmethod
    def chunks(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        """The rows, in chunks, with these columns only."""

    @abstractmethod
    def first_row(self, columns: list[str]) -> pd.DataFrame:
        """The first row (of these columns) as a one-row DataFrame."""

    def pass_one(self, request: LevelRequest, progress: bool) -> Levels:
        factors, level_vars = list(request.factors), request.level_vars
        read = sorted(set(factors) | set(level_vars))
        groups = None
        values: dict[str, Any] = {}
        rows = 0
        with _bar(progress, self.rows, "levels") as bar:
            for chunk in self.chunks(read):
                rows += len(chunk)
                found = chunk[factors].dropna().drop_duplicates()
                groups = found if groups is None else _unique([groups, found])
                for var in level_vars:
                    found = chunk[var].dropna().drop_duplicates()
                    values[var] = found if var not in values else _unique([values[var], found])
                bar.update(len(chunk))
        first_row = self.first_row(list(request.used)) if rows else None
        return Levels(rows, groups, values, first_row)

    def pass_two(self, reduction: Reduction, progress: bool) -> dict:
        total, shift = None, None
        with _bar(progress, self.rows, "statistics") as bar:
            for chunk in self.chunks(list(reduction.used)):
                if not len(chunk):
                    continue
                if shift is None:
                    centre = reduction.centre_on
                    shift = 0.0 if centre is None else mean_y(chunk, centre)
                counts_only = total is not None and refused(total)
                part = reduction.partial_sums(chunk, shift, counts_only=counts_only)
                total = part if total is None else merge(total, part)
                bar.update(len(chunk))
        if total is None:
            raise DataError("The data has no rows.")
        total["shift"] = shift
        return total


class FramesSource(RowChunks):
    """DataFrames from a function that returns a fresh iterator on each call."""

    def __init__(self, make: Callable[[], Iterable], rows: int | None):
        self.make, self.rows = make, rows
        first = None
        for chunk in self._frames():
            first = chunk
            if len(chunk):
                break
        if first is None:
            raise DataError("The source gave no DataFrames: the data has no rows.")
        self.names = [str(c) for c in first.columns]
        self.dtypes = {str(c): first[c].dtype for c in first.columns}

    def _frames(self) -> Iterator[pd.DataFrame]:
        for i, chunk in enumerate(self.make()):
            if not isinstance(chunk, pd.DataFrame):
                raise DataError(
                    f"Chunk {i} of the source is a {type(chunk).__name__}, not a pandas DataFrame."
                )
            yield chunk

    def chunks(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        for chunk in self._frames():
            absent = [c for c in columns if c not in chunk.columns]
            if absent:
                raise DataError(
                    f"Column {absent[0]!r} named in the formula is not in every chunk of "
                    f"the data (a chunk has: {', '.join(map(str, chunk.columns[:20]))})."
                )
            yield chunk[columns]

    def first_row(self, columns: list[str]) -> pd.DataFrame:
        for chunk in self.chunks(columns):
            if len(chunk):
                return chunk.iloc[:1].reset_index(drop=True)
        raise DataError("The data has no rows.")


class ParquetSource(RowChunks):
    """A Parquet file (read with ParquetFile.iter_batches) or a directory (pyarrow.dataset)."""

    def __init__(self, path: Path, chunk_rows: int):
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        if not path.exists():
            raise DataError(f"No Parquet file or directory at {str(path)!r}.")
        self.path, self.chunk_rows = path, chunk_rows
        try:
            if path.is_dir():
                self.dataset = ds.dataset(path, format="parquet", partitioning="hive")
                schema = self.dataset.schema
                self.rows = self.dataset.count_rows()
            else:
                self.dataset = None
                with pq.ParquetFile(path) as f:
                    schema, self.rows = f.schema_arrow, f.metadata.num_rows
        except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
            raise DataError(f"Cannot read {str(path)!r} as Parquet: {exc}") from None
        names = [n for n in schema.names if not n.startswith("__index_level_")]
        self.names = names
        self.dtypes = {n: schema.field(n).type for n in names}

    def _batches(self, columns: list[str], batch_size: int):
        import pyarrow.parquet as pq

        if self.dataset is not None:  # readahead of one batch keeps memory ~ chunk_rows
            yield from self.dataset.to_batches(
                columns=columns, batch_size=batch_size, batch_readahead=1, fragment_readahead=1
            )
        else:
            with pq.ParquetFile(self.path) as f:
                yield from f.iter_batches(batch_size=batch_size, columns=columns)

    def chunks(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        for batch in self._batches(columns, self.chunk_rows):
            yield batch.to_pandas()

    def first_row(self, columns: list[str]) -> pd.DataFrame:
        for batch in self._batches(columns, 1):
            if batch.num_rows:
                return batch.slice(0, 1).to_pandas()
        raise DataError("The data has no rows.")


# ---------------------------------------------------------------------------------------
# Dask: partitions reduced where they live.


def import_dask():
    """The ``dask`` module (with ``dask.dataframe``), or an error naming the extra.

    Raises
    ------
    MultilevelError
        When dask is not installed: ``pip install "multilevel[cluster]"``.
    """
    try:
        import dask
        import dask.dataframe  # noqa: F401
    except ImportError:
        raise MultilevelError(f"Reading a Dask DataFrame needs dask: {CLUSTER_HINT}") from None
    return dask


class DaskSource(ChunkSource):
    """A Dask DataFrame: levels and sums computed where its partitions live.

    Pass one also computes the mean response of partition 0 (in the same round trip), which
    pass two centres on; the source keeps it between the passes."""

    def __init__(self, ddf):
        self.dask = import_dask()
        if not hasattr(ddf, "to_delayed") or not hasattr(ddf, "columns"):
            raise DataError(f"A Dask source must be a Dask DataFrame, got {type(ddf).__name__}.")
        self.ddf = ddf
        self.y_mean: float | None = None  # partition 0's, from pass one (None: no rows there)
        self.names = [str(c) for c in ddf.columns]
        self.dtypes = {str(c): t for c, t in ddf.dtypes.items()}
        self.rows = None

    def _compute(self, *objs, progress: bool):
        show = progress and on_terminal()  # as progress_bar: no bar in logs and pipes
        try:
            from distributed import get_client

            client = get_client()
        except (ImportError, ValueError):
            client = None
        if client is not None:
            futures = client.compute(list(objs))
            if show:
                from distributed import progress as show_progress

                show_progress(futures)
            return client.gather(futures)
        if show:
            from dask.diagnostics import ProgressBar

            with ProgressBar():
                return self.dask.compute(*objs)
        return self.dask.compute(*objs)

    def pass_one(self, request: LevelRequest, progress: bool) -> Levels:
        ddf = self.ddf
        factors, level_vars = list(request.factors), request.level_vars
        # Dask collections only: mixed with Delayed objects, distributed (2026.8) returned
        # the results of one compute call in another order.
        first_part = (
            ddf[[request.response]]
            .partitions[0]
            .map_partitions(_sized_mean_series, request.response, meta=pd.Series(dtype=float))
        )
        jobs = [
            ddf.map_partitions(len).sum(),
            ddf[factors].dropna().drop_duplicates(),
            ddf[list(request.used)].head(1, npartitions=-1, compute=False),
            first_part,
        ]
        jobs += [ddf[v].dropna().drop_duplicates() for v in level_vars]
        rows, groups, first_row, (first_rows, y_mean), *values = self._compute(
            *jobs, progress=progress
        )
        first_row = first_row.reset_index(drop=True)
        values = {v: u.reset_index(drop=True) for v, u in zip(level_vars, values)}
        self.y_mean = y_mean if first_rows else None
        return Levels(int(rows), groups.reset_index(drop=True), values, first_row)

    def pass_two(self, reduction: Reduction, progress: bool) -> dict:
        delayed = self.dask.delayed
        parts = self.ddf[list(reduction.used)].to_delayed()
        # one key for the reduction (the plan): sent to the workers once, not per task
        reduction_d = delayed(reduction, name=f"chunked-plan-{id(reduction)}", traverse=False)
        centre = reduction.centre_on
        shift = 0.0 if centre is None else self.y_mean
        if shift is None:  # partition 0 is empty: the first one with rows
            for part in parts:
                rows, shift = self._compute(delayed(_sized_mean)(part, centre), progress=False)[0]
                if rows:
                    break
        partials = [delayed(_partition_sums)(part, reduction_d, shift) for part in parts]
        while len(partials) > 1:  # pairwise tree: per-group arrays only, never rows
            pairs = [delayed(merge)(a, b) for a, b in zip(partials[::2], partials[1::2])]
            partials = pairs + ([partials[-1]] if len(partials) % 2 else [])
        total = self._compute(partials[0], progress=progress)[0]
        if total is None or total["rows"] == 0:
            raise DataError("The data has no rows.")
        total["shift"] = shift
        return total


# Module-level functions: Dask workers unpickle them by name.


def _sized_mean(part: pd.DataFrame, response: str) -> tuple[int, float]:
    return len(part), (mean_y(part, response) if len(part) else 0.0)


def _sized_mean_series(part: pd.DataFrame, response: str) -> pd.Series:
    return pd.Series(_sized_mean(part, response), dtype=float)


def _partition_sums(part: pd.DataFrame, reduction: Reduction, shift: float) -> dict:
    return reduction.partial_sums(part, shift) if len(part) else no_rows()
