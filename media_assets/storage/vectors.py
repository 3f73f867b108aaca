"""The corpus's key-frame embeddings in a vector store: LanceDB, embedded (a folder on the
local backend, ``s3://`` on S3; no server).

One table, ``key_frames``, one row per key frame of every video: ``id`` (``<video>#<frame
index>``), ``video`` (the ``videos`` partition key), ``frame_index`` and ``timestamp_s`` (the
1 FPS sample), ``uri`` (the key-frame JPEG), ``repeat_of`` (the frame index of the distinct
key frame of the same video it repeats, or null) and ``vector`` (``fixed_size_list<float32>[d]``,
L2-normalised). A video's rows are replaced in one Lance commit (:meth:`replace_video`: a
``merge_insert`` that also deletes the video's rows not in the new set), so a reader sees the
old rows or the new ones, never a mix, and a killed writer leaves the old ones.

Search is cosine distance (``1 - cosine similarity``), exact over the table until
:meth:`build_index` has made an IVF index (``benchmarks/vector_search.py`` measures both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..kernels.keyframes import l2_normalize

TABLE = "key_frames"
# rows from which an IVF index is built: exact search reads every row per query, ~6 ms per
# 1,000 rows of 1280-d (benchmarks/vector_search.py: 312 ms at 50,000), so ~60 ms here; once
# built, rows written since are folded into it by :meth:`KeyFrameVectors.maintain`
INDEX_MIN_ROWS = 10_000
# IVF lists searched per query (of ~sqrt(rows)); benchmarks/vector_search.py at 1,000,000 rows
NPROBES = 30


def _quoted(text: str) -> str:
    """``text`` as a SQL string literal (Lance filters are SQL)."""
    return "'" + text.replace("'", "''") + "'"


def schema(dim: int) -> pa.Schema:
    """The table's schema for ``dim``-dimensional embeddings."""
    return pa.schema([
        ("id", pa.string()), ("video", pa.string()), ("frame_index", pa.int64()), ("timestamp_s", pa.float64()),
        ("uri", pa.string()), ("repeat_of", pa.int64()), ("vector", pa.list_(pa.float32(), dim)),
    ])


def rows(video: str, frame_indices: list[int], timestamps_s: list[float], uris: list[str], repeat_of: list[int | None],
         vectors: np.ndarray) -> pa.Table:
    """One video's key frames as table rows; ``vectors (n, d)`` float, normalised here.

    Raises:
        ValueError: the lists and ``vectors`` differ in length, or ``vectors`` is not 2-D.
    """
    v = l2_normalize(vectors)
    n = len(frame_indices)
    if v.ndim != 2 or len(v) != n or not (len(timestamps_s) == len(uris) == len(repeat_of) == n):
        raise ValueError(f"{video}: {n} frame indices, {len(timestamps_s)} timestamps, {len(uris)} URIs, "
                         f"{len(repeat_of)} repeat_of and vectors {v.shape} must describe the same key frames")
    return pa.table({
        "id": [f"{video}#{i}" for i in frame_indices], "video": [video] * n, "frame_index": pa.array(frame_indices, pa.int64()),
        "timestamp_s": pa.array(timestamps_s, pa.float64()), "uri": uris, "repeat_of": pa.array(repeat_of, pa.int64()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1]),
    }, schema=schema(v.shape[1]))


@dataclass(frozen=True)
class Neighbour:
    """A stored key frame near a query: its row's fields and ``similarity`` (cosine)."""

    video: str
    frame_index: int
    timestamp_s: float
    uri: str
    similarity: float


class KeyFrameVectors:
    """The ``key_frames`` table at ``uri`` (a folder, or ``s3://bucket/prefix``).

    Args:
        uri: where the LanceDB database lives.
        storage_options: object-store options for ``s3://`` (``endpoint``, ``region``,
            ``allow_http``; credentials from the environment as for boto3).
    """

    def __init__(self, uri: str, storage_options: dict[str, str] | None = None):
        import lancedb  # imported here: only the key-frame vector steps and `similar` need it

        self.uri = uri
        self.db = lancedb.connect(uri, storage_options=storage_options or None)

    def _table(self, dim: int | None = None):
        """The table; created (empty) for ``dim`` when it does not exist yet, else ``None``."""
        if TABLE in self.db.list_tables().tables:
            return self.db.open_table(TABLE)
        if dim is None:
            return None
        return self.db.create_table(TABLE, schema=schema(dim), exist_ok=True)

    def replace_video(self, video: str, table: pa.Table) -> None:
        """Make ``table`` (from :func:`rows`) the rows of ``video``, in one commit.

        Raises:
            ValueError: ``table`` holds rows of another video, or its vectors' dimension
                differs from the stored table's (another embedder: rebuild the table).
        """
        if table.num_rows and set(table["video"].to_pylist()) != {video}:
            raise ValueError(f"rows for {video} hold other videos' rows")
        dim = table.schema.field("vector").type.list_size
        stored = self._table(dim if table.num_rows else None)
        if stored is None:
            return  # nothing stored, nothing to store
        stored_dim = stored.schema.field("vector").type.list_size
        if table.num_rows and stored_dim != dim:
            raise ValueError(f"{video}: {dim}-d embeddings, the vector table at {self.uri} holds {stored_dim}-d ones "
                             "(the embedder changed: remove the table and materialize key_frame_vectors again)")
        (stored.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
         .when_not_matched_by_source_delete(f"video = {_quoted(video)}").execute(table.cast(stored.schema)))

    def count(self, video: str | None = None) -> int:
        """Rows stored (of ``video``, or all)."""
        table = self._table()
        if table is None:
            return 0
        return table.count_rows(f"video = {_quoted(video)}" if video is not None else None)

    def videos(self) -> int:
        """Distinct videos stored."""
        table = self._table()
        if table is None:
            return 0
        return len(set(table.search().select(["video"]).limit(table.count_rows()).to_arrow()["video"].to_pylist()))

    def nearest(self, vector: np.ndarray, k: int = 10, exclude_video: str | None = None, nprobes: int = NPROBES) -> list[Neighbour]:
        """The ``k`` stored key frames most similar to ``vector (d,)``, best first (other
        videos only when ``exclude_video`` is given). ``nprobes``: IVF partitions searched once
        an index exists (exact search before)."""
        return self.nearest_each(np.asarray(vector)[None], k, exclude_video, nprobes)[0]

    def nearest_each(self, vectors: np.ndarray, k: int = 10, exclude_video: str | None = None,
                     nprobes: int = NPROBES) -> list[list[Neighbour]]:
        """:meth:`nearest` for each row of ``vectors (q, d)``, on one opening of the table."""
        table = self._table()
        if table is None:
            return [[] for _ in vectors]
        found = []
        for vector in vectors:
            query = table.search(np.asarray(vector, np.float32)).distance_type("cosine").limit(k).nprobes(nprobes)
            if exclude_video is not None:
                query = query.where(f"video != {_quoted(exclude_video)}", prefilter=True)
            rows_ = query.select(["video", "frame_index", "timestamp_s", "uri", "_distance"]).to_arrow().to_pylist()
            found.append([Neighbour(r["video"], r["frame_index"], r["timestamp_s"], r["uri"], 1.0 - r["_distance"]) for r in rows_])
        return found

    def vector_of(self, uri: str) -> np.ndarray | None:
        """The stored vector of the key frame at ``uri``, or ``None``."""
        table = self._table()
        if table is None:
            return None
        found = table.search().where(f"uri = {_quoted(uri)}").select(["vector"]).limit(1).to_arrow()
        return np.asarray(found["vector"][0].as_py(), np.float32) if found.num_rows else None

    def build_index(self, num_partitions: int | None = None) -> None:
        """An IVF-flat index over ``vector`` (cosine), ``num_partitions`` lists (default
        ~sqrt(rows)), replacing any earlier one."""
        from lancedb.index import IvfFlat

        table = self._table()
        n = table.count_rows()
        table.create_index("vector", config=IvfFlat(distance_type="cosine", num_partitions=num_partitions or max(1, int(np.sqrt(n)))),
                           replace=True)

    def maintain(self) -> str:
        """Keep search fast as the table grows: build the IVF index once the table reaches
        ``INDEX_MIN_ROWS`` rows; once it exists, rows written since are searched exactly beside
        it until they are a tenth of the table (or ``INDEX_MIN_ROWS``), then folded into it and
        the files compacted (LanceDB's ``optimize``, which reads the whole table: ~100 s at
        1,000,000 rows, so it runs once per that many new rows, not per video). Returns what
        was done (for the run's metadata)."""
        table = self._table()
        if table is None:
            return "empty"
        indices = table.list_indices()
        if not indices:
            if table.count_rows() < INDEX_MIN_ROWS:
                return "exact search"
            self.build_index()
            return "index built"
        stats = table.index_stats(indices[0].name)
        if stats.num_unindexed_rows < max(INDEX_MIN_ROWS, stats.num_indexed_rows // 10):
            return f"index ({stats.num_unindexed_rows} rows searched exactly beside it)"
        table.optimize()
        return "index updated"
