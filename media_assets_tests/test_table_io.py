"""The Parquet table IO manager (``storage.tables.ParquetTables``, a Dagster ``UPathIOManager``)
on the local store and on moto's S3 server: partitioned tables written at the documented
location and loaded as inputs, writes all-or-nothing, clear errors for a missing table or
bucket."""

import io
import pathlib

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from media_assets.storage.tables import MissingTableError, ParquetTables

DAYS = dg.DailyPartitionsDefinition(start_date="2026-11-01")


def _defs(root, fail_after_write: list | None = None):
    @dg.asset(partitions_def=DAYS, io_manager_key="tables")
    def upstream(context: dg.AssetExecutionContext) -> pa.Table:
        day = context.partition_key
        return pa.table({"day": [day] * 3, "x": pa.array([1, 2, 3], pa.int16()), "tokens": pa.array([[1], [], [2, 3]], pa.list_(pa.int16()))})

    @dg.asset(partitions_def=DAYS, io_manager_key="tables")
    def downstream(upstream: pa.Table) -> pa.Table:
        return upstream.append_column("y", pa.array([10, 20, 30], pa.int64()))

    return dg.Definitions(assets=[upstream, downstream], resources={"tables": ParquetTables(base_path=root, names={"upstream": "rows"})})


@pytest.fixture(params=["local", "s3"])
def table_root(request, tmp_path):
    if request.param == "local":
        from media_assets.storage import ObjectStoreResource

        return ObjectStoreResource(backend="local", data_root=str(tmp_path / "data")).upath("work", "audio/"), None
    resource, buckets = request.getfixturevalue("s3_resource"), request.getfixturevalue("s3_buckets")
    bucket = buckets("work")
    return resource.upath(bucket, "audio/"), (resource.get_store(), bucket)


def _read(root, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO((root / key).read_bytes()))


def test_partitioned_tables_round_trip_at_the_documented_path(table_root, instance):
    root, s3 = table_root
    defs = _defs(root)
    for day in ("2026-11-02", "2026-11-03"):
        result = dg.materialize(list(defs.assets), partition_key=day, instance=instance, resources=defs.resources)
        assert result.success
        # `<base>/<table name>/<partition>.parquet`: the table name from the IO manager's names
        written = _read(root, f"rows/{day}.parquet")
        assert written["day"].to_pylist() == [day] * 3 and written.schema.field("tokens").type == pa.list_(pa.int16())
        assert _read(root, f"downstream/{day}.parquet")["y"].to_pylist() == [10, 20, 30]
        mat = next(e.materialization for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("upstream"))
        assert mat.metadata["table_rows"].value == 3 and str(root / "rows" / f"{day}.parquet") in mat.metadata["path"].value
    if s3:
        store, bucket = s3
        assert sorted(o.key for o in store.list_objects(bucket, "audio/")) == [
            "audio/downstream/2026-11-02.parquet", "audio/downstream/2026-11-03.parquet",
            "audio/rows/2026-11-02.parquet", "audio/rows/2026-11-03.parquet"]
    else:
        assert not [p for p in (root / "rows").iterdir() if p.name.startswith(".tmp-")]


def test_downstream_of_an_unmaterialized_partition_names_what_is_missing(table_root, instance):
    root, _ = table_root
    defs = _defs(root)
    result = dg.materialize(list(defs.assets), selection=["downstream"], partition_key="2026-11-05", instance=instance,
                            resources=defs.resources, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert MissingTableError.__name__ in failure.to_string()
    assert "materialize upstream for partition 2026-11-05 first" in failure.to_string()


def test_a_failed_write_keeps_the_previous_table(tmp_path, instance, monkeypatch):
    """A write that dies midway (here: the disk fails while writing the temp file) leaves the
    previous partition table whole and no temp file behind."""
    from media_assets.storage import ObjectStoreResource

    root = ObjectStoreResource(backend="local", data_root=str(tmp_path / "data")).upath("work")
    defs = _defs(root)
    assert dg.materialize(list(defs.assets), selection=["upstream"], partition_key="2026-11-02", instance=instance, resources=defs.resources).success
    before = (root / "rows" / "2026-11-02.parquet").read_bytes()
    real_write = pathlib.Path.write_bytes  # the local temp file is a pathlib.Path (object_store.write_atomically)

    def failing_write(self, data):
        if self.name.startswith(".tmp-"):
            real_write(self, data[: len(data) // 2])
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", failing_write)
    result = dg.materialize(list(defs.assets), selection=["upstream"], partition_key="2026-11-02", instance=instance,
                            resources=defs.resources, raise_on_error=False)
    assert not result.success
    monkeypatch.undo()
    assert (root / "rows" / "2026-11-02.parquet").read_bytes() == before
    assert [p.name for p in (root / "rows").iterdir()] == ["2026-11-02.parquet"]


def test_a_missing_bucket_is_an_error_not_created(s3_resource, s3_client, instance):
    """Writing to an S3 bucket that does not exist fails the step naming the bucket; the IO
    manager never creates buckets (s3fs' mkdir would)."""
    root = s3_resource.upath("no-such-bucket-for-tables", "audio/")
    defs = _defs(root)
    result = dg.materialize(list(defs.assets), selection=["upstream"], partition_key="2026-11-02", instance=instance,
                            resources=defs.resources, raise_on_error=False)
    assert not result.success
    assert "no-such-bucket-for-tables" in next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.to_string()
    assert "no-such-bucket-for-tables" not in [b["Name"] for b in s3_client.list_buckets()["Buckets"]]


def test_an_output_that_is_not_a_table_is_refused(tmp_path, instance):
    from media_assets.storage import ObjectStoreResource

    @dg.asset(partitions_def=DAYS, io_manager_key="tables")
    def not_a_table() -> dict:
        return {"a": 1}

    root = ObjectStoreResource(backend="local", data_root=str(tmp_path / "data")).upath("work")
    result = dg.materialize([not_a_table], partition_key="2026-11-02", instance=instance,
                            resources={"tables": ParquetTables(base_path=root)}, raise_on_error=False)
    assert not result.success
    assert "expected a pyarrow.Table output, got dict" in next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.to_string()
