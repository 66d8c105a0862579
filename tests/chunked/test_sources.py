"""Every kind of source gives the in-memory statistics; what cannot be read twice, or at
all, is refused by name."""

import logging
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chunked_checks import (
    MIXED,
    RADON,
    assert_same,
    in_memory,
    mixed_frame,
    radon_frame,
    small_frame,
)

import multilevel as ml
from multilevel.chunked import chunked_statistics
from multilevel.chunked.sources import (
    DaskSource,
    FramesSource,
    ParquetSource,
    import_dask,
    open_source,
)


def test_open_source_picks_the_source(tmp_path):
    small = small_frame()
    path = tmp_path / "small.parquet"
    small.to_parquet(path)
    assert isinstance(open_source(path, 10), ParquetSource)
    assert isinstance(open_source(str(path), 10), ParquetSource)
    for source in (small, [small], (small,), lambda: iter([small])):
        assert isinstance(open_source(source, 10), FramesSource)
    frames = open_source(small, 25)
    assert frames.rows == 60 and [len(c) for c in frames.chunks(["y"])] == [25, 25, 10]
    dd = pytest.importorskip("dask.dataframe")
    assert isinstance(open_source(dd.from_pandas(small, npartitions=2), 10), DaskSource)


def test_list_of_frames_and_a_function_of_frames():
    mixed = mixed_frame()
    frames = [mixed.iloc[i : i + 53] for i in range(0, len(mixed), 53)]
    assert "a" not in set(frames[0].kind) and "d" not in set(frames[-1].kind)
    design, ref = in_memory(MIXED, mixed)
    summary, stats = chunked_statistics(MIXED, frames)
    assert_same(summary, stats, design, ref)
    # the same from a function that returns a new iterator each time
    summary, stats = chunked_statistics(MIXED, lambda: iter(frames))
    assert_same(summary, stats, design, ref)


def test_parquet_file_reads_only_the_columns_used(tmp_path, monkeypatch):
    radon = radon_frame()
    path = tmp_path / "radon.parquet"
    pq.write_table(pa.Table.from_pandas(radon), path, row_group_size=200)
    asked = []
    original = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        asked.append(set(kwargs["columns"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    summary, stats = chunked_statistics(RADON, str(path), chunk_rows=150)
    assert_same(summary, stats, *in_memory(RADON, radon))
    assert asked[0] == {"county"}  # pass 1: the grouping column only
    assert set().union(*asked) == {"log_radon", "floor", "county"}


def test_parquet_directory(tmp_path):
    mixed = mixed_frame()
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, start in enumerate(range(0, len(mixed), 250)):
        part = mixed.iloc[start : start + 250].assign(shade=lambda d: d.shade.astype(str))
        pq.write_table(pa.Table.from_pandas(part), folder / f"part-{i}.parquet")
    formula = "y ~ x + kind + C(k) + (1 + x | g)"
    summary, stats = chunked_statistics(formula, folder, chunk_rows=64)
    assert_same(summary, stats, *in_memory(formula, mixed))


def test_dask_dataframe_on_a_local_cluster():
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    mixed = mixed_frame()
    ddf = dd.from_pandas(mixed, npartitions=4)
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=False,
            threads_per_worker=1,
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,
        ) as cluster,
        distributed.Client(cluster),
    ):
        summary, stats = chunked_statistics(MIXED, ddf)
    assert_same(summary, stats, *in_memory(MIXED, mixed))


def test_dask_with_an_empty_first_partition():
    """The shift then comes from the first partition with rows (local scheduler)."""
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.dataframe")
    mixed = mixed_frame()
    formula = "y ~ x + (1 | g)"
    empty = dd.from_pandas(mixed.iloc[:0], npartitions=1)
    empty_first = dd.concat([empty, dd.from_pandas(mixed, npartitions=3)])
    assert len(empty_first.partitions[0]) == 0
    with dask.config.set(scheduler="synchronous"):
        summary, stats = chunked_statistics(formula, empty_first)
    assert_same(summary, stats, *in_memory(formula, mixed))


def test_sources_that_cannot_be_read_twice_or_at_all(tmp_path):
    small = small_frame()
    with pytest.raises(ml.DataError, match="one-shot iterator"):
        chunked_statistics("y ~ x + (1 | g)", iter([small]))
    with pytest.raises(ml.DataError, match="No Parquet file"):
        chunked_statistics("y ~ x + (1 | g)", tmp_path / "absent.parquet")
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(ml.DataError, match="Cannot read .* as Parquet"):
        chunked_statistics("y ~ x + (1 | g)", tmp_path / "text.parquet")
    with pytest.raises(ml.DataError, match="Dask DataFrame"):
        chunked_statistics("y ~ x + (1 | g)", 42)
    with pytest.raises(ml.DataError, match="gave no DataFrames"):
        chunked_statistics("y ~ x + (1 | g)", [])
    with pytest.raises(ml.DataError, match="Chunk 1 of the source is a str"):
        chunked_statistics("y ~ x + (1 | g)", [small, "rows"])
    with pytest.raises(ml.DataError, match="'x' named in the formula is not in every chunk"):
        chunked_statistics("y ~ x + (1 | g)", [small, small.drop(columns="x")])
    calls = []

    def changing():  # a new group appears on the second reading
        calls.append(1)
        return iter([small if len(calls) < 3 else small.assign(g="z")])

    with pytest.raises(ml.DataError, match="'z'.*same rows both times"):
        chunked_statistics("y ~ x + (1 | g)", changing)


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(ml.MultilevelError, match=r'pip install "multilevel\[cluster\]"'):
        import_dask()


def test_frames_of_no_rows_are_refused():
    empty = small_frame().iloc[:0]
    with pytest.raises(ml.DataError, match="no rows"):
        chunked_statistics("y ~ x + (1 | g)", [empty, empty])
    with pytest.raises(ml.DataError, match="no rows"):
        chunked_statistics("y ~ x + (1 | g)", pd.DataFrame(empty))
