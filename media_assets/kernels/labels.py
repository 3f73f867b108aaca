"""Label correction of training batches: match each row's video embedding to the master
embedding table, then replace its targets from the targets table.

Data contract (validated by :func:`validate_batch`, :func:`master_table_arrays`,
:func:`parse_targets_csv`):

* batch: a dict with at least ``audio_embeddings (n, d_a)``, ``video_embeddings (n, d_v)``
  (float; compared as float32) and ``targets`` ``(n,)`` or ``(n, t)`` numeric; other keys
  are carried through unchanged.
* master table: a dict ``video_id -> (d_v,) vector``, or a pandas DataFrame with a
  ``video_id`` column and one embedding column (each cell a ``(d_v,)`` vector).
* targets: CSV with a ``video_id`` column and one or more numeric target columns.
  Video ids are compared as strings (``7`` in the CSV matches the master id ``7`` or ``"7"``).

Matching (:func:`match_embeddings`), vectorized, no per-row Python loop:

1. exact: the row's float32 bytes equal a master row's bytes. Each row gets a 64-bit
   fingerprint (a multiplicative hash of its 64-bit words, wrapping uint64 arithmetic, so it
   is bit-exact and order-independent); query fingerprints are looked up in the sorted master
   fingerprints (``np.searchsorted``, a 400 KB array for 50,000 rows) and every hit is
   confirmed by comparing all of the row's bytes, so a fingerprint collision can never make a
   wrong match. Equal rows in the master table resolve to the lowest master row.
2. otherwise nearest neighbour by cosine similarity, accepted only when >= ``tolerance``
   (default 0.9999). Exact search with a filter-and-refine step: an orthonormal projection
   ``P`` (top ``k`` principal axes of the master table) never lengthens a distance, so every
   master vector whose cosine with the query is >= ``tolerance`` -- i.e. whose unit-vector
   distance is <= ``r = sqrt(2 (1 - tolerance))`` -- lies within ``r`` of the query in the
   projected space too (the lower-bounding lemma of GEMINI, Faloutsos et al., SIGMOD 1994).
   Candidates are found in ``k`` (8) dimensions by a k-d tree range search and confirmed with
   the full cosine, so the result equals brute force at a fraction of its cost.
3. rows still unmatched keep their old targets and are flagged.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from scipy.spatial import cKDTree

REQUIRED_BATCH_KEYS = ("audio_embeddings", "video_embeddings", "targets")

MATCH_NONE, MATCH_EXACT, MATCH_APPROX = 0, 1, 2


class BatchFormatError(ValueError):
    """A batch, master table or targets table breaks the data contract (message names the
    object and the field)."""


def validate_batch(batch: Any, name: str, d_v: int | None = None) -> dict:
    """Check a loaded batch against the contract; returns it unchanged.

    Raises:
        BatchFormatError: not a dict, a required key missing, an array of the wrong rank,
            dtype or row count, no rows at all, a NaN or infinite value in an embedding or
            target, or ``video_embeddings`` width differing from ``d_v``.
    """
    if not isinstance(batch, dict):
        raise BatchFormatError(f"{name}: expected a dict, got {type(batch).__name__}")
    for key in REQUIRED_BATCH_KEYS:
        if key not in batch:
            raise BatchFormatError(f"{name}: missing key {key!r} (has {sorted(map(str, batch))})")
    n = None
    for key in ("audio_embeddings", "video_embeddings"):
        arr = batch[key]
        if not isinstance(arr, np.ndarray) or arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
            raise BatchFormatError(f"{name}: {key} must be a 2-D float array, got {_describe(arr)}")
        if n is not None and arr.shape[0] != n:
            raise BatchFormatError(f"{name}: {key} has {arr.shape[0]} rows, audio_embeddings has {n}")
        n = arr.shape[0]
    targets = batch["targets"]
    if not isinstance(targets, np.ndarray) or targets.ndim not in (1, 2) or not np.issubdtype(targets.dtype, np.number):
        raise BatchFormatError(f"{name}: targets must be a numeric (n,) or (n, t) array, got {_describe(targets)}")
    if targets.shape[0] != n:
        raise BatchFormatError(f"{name}: targets has {targets.shape[0]} rows, the embeddings have {n}")
    if n == 0:
        raise BatchFormatError(f"{name}: the batch has 0 rows (audio_embeddings, video_embeddings and targets are empty)")
    for key in ("audio_embeddings", "video_embeddings", "targets"):
        if np.issubdtype(batch[key].dtype, np.floating) and not np.isfinite(batch[key]).all():
            bad = np.flatnonzero(~np.isfinite(batch[key]).reshape(n, -1).all(axis=1))
            raise BatchFormatError(f"{name}: {key} has NaN or infinite values in {len(bad)} row(s), first rows {bad[:5].tolist()}")
    if d_v is not None and batch["video_embeddings"].shape[1] != d_v:
        raise BatchFormatError(f"{name}: video_embeddings has d_v={batch['video_embeddings'].shape[1]}, the master table has d_v={d_v}")
    return batch


def check_batch_size(batch: Any, name: str, *, max_bytes: int, max_rows: int) -> None:
    """Bound a loaded batch before anything reads its arrays: the rows of ``video_embeddings``
    and the bytes all its arrays declare. A pickle can call ``numpy.ndarray(shape)``: the
    memory is reserved but untouched until read, so a 100-byte pickle could otherwise make the
    first ``isfinite`` touch gigabytes.

    Raises:
        BatchFormatError: more than ``max_rows`` rows, or arrays of more than ``max_bytes``
            bytes (settings ``MEDIA_ASSETS_LABELS_MAX_BATCH_ROWS`` / ``_MAX_BATCH_BYTES``).
    """
    if not isinstance(batch, dict):
        return
    arrays = {id(v): v for v in batch.values() if isinstance(v, np.ndarray)}
    declared = sum(a.nbytes for a in arrays.values())
    if declared > max_bytes:
        raise BatchFormatError(f"{name}: its arrays declare {declared:,} bytes, over the limit of {max_bytes:,} bytes "
                               "(setting MEDIA_ASSETS_LABELS_MAX_BATCH_BYTES)")
    emb = batch.get("video_embeddings")
    if isinstance(emb, np.ndarray) and emb.ndim >= 1 and emb.shape[0] > max_rows:
        raise BatchFormatError(f"{name}: {emb.shape[0]:,} rows is over the limit of {max_rows:,} rows "
                               "(setting MEDIA_ASSETS_LABELS_MAX_BATCH_ROWS)")


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"ndarray {x.shape} {x.dtype}"
    return type(x).__name__


def master_table_arrays(table: Any, embedding_column: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(ids (n,) str, matrix (n, d) float32)`` from a master table (dict or DataFrame).

    Raises:
        BatchFormatError: empty table, vectors of different lengths, non-numeric vectors, a
            DataFrame without ``video_id`` or with an ambiguous embedding column.
    """
    if isinstance(table, dict):
        ids = [str(k) for k in table]
        vectors = list(table.values())
    elif type(table).__name__ == "DataFrame":
        if "video_id" not in table.columns:
            raise BatchFormatError(f"master table: DataFrame has no 'video_id' column (columns: {list(table.columns)})")
        others = [c for c in table.columns if c != "video_id"]
        col = embedding_column or ("embedding" if "embedding" in others else (others[0] if len(others) == 1 else None))
        if col is None or col not in table.columns:
            raise BatchFormatError(f"master table: cannot tell the embedding column among {others}; configure embedding_column")
        ids = [str(v) for v in table["video_id"].tolist()]
        vectors = table[col].tolist()
    else:
        raise BatchFormatError(f"master table: expected a dict or a pandas DataFrame, got {type(table).__name__}")
    if not ids:
        raise BatchFormatError("master table: empty")
    try:
        matrix = np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v in vectors])
    except (ValueError, TypeError) as err:
        raise BatchFormatError(f"master table: embeddings are not numeric vectors of one length ({err})") from err
    if len(set(ids)) != len(ids):
        raise BatchFormatError("master table: duplicate video ids")
    return np.asarray(ids, dtype=str), matrix


@dataclass
class TargetsTable:
    """Targets by video id: ``ids (m,) str``, ``values (m, t) float64``, ``columns``."""

    ids: np.ndarray
    values: np.ndarray
    columns: list[str]


def parse_targets_csv(data: bytes, columns: list[str] | None = None) -> TargetsTable:
    """Read ``targets.csv`` (``video_id`` + target columns; all non-id columns by default).

    Raises:
        BatchFormatError: no ``video_id`` column, a configured column missing, a non-numeric
            target column, or a video id listed twice.
    """
    import polars as pl

    try:
        df = pl.read_csv(io.BytesIO(data), schema_overrides={"video_id": pl.Utf8})
    except Exception as err:  # noqa: BLE001 - polars raises several types for malformed CSV
        raise BatchFormatError(f"targets.csv: not a readable CSV ({err})") from err
    if "video_id" not in df.columns:
        raise BatchFormatError(f"targets.csv: no 'video_id' column (columns: {df.columns})")
    columns = columns or [c for c in df.columns if c != "video_id"]
    missing = [c for c in columns if c not in df.columns]
    if missing or not columns:
        raise BatchFormatError(f"targets.csv: target columns {missing or columns} not found (columns: {df.columns})")
    for c in columns:
        if not df.schema[c].is_numeric():
            raise BatchFormatError(f"targets.csv: target column {c!r} is {df.schema[c]}, not numeric")
    if df["video_id"].is_duplicated().any():
        dup = df.filter(df["video_id"].is_duplicated())["video_id"].to_list()[:5]
        raise BatchFormatError(f"targets.csv: video ids listed more than once, e.g. {dup}")
    return TargetsTable(
        ids=df["video_id"].to_numpy().astype(str),
        values=df.select(columns).to_numpy().astype(np.float64),
        columns=columns,
    )


def _words(matrix: np.ndarray) -> np.ndarray:
    """The float32 rows' bytes as unsigned integer words: ``(n, d/2) uint64`` when ``d`` is even
    (a view, no copy), else ``(n, d) uint32``."""
    m = np.ascontiguousarray(matrix, dtype=np.float32)
    return m.view(np.uint64) if m.shape[1] % 2 == 0 else m.view(np.uint32)


def _fingerprints(matrix: np.ndarray) -> np.ndarray:
    """``(n,) uint64``: sum of each row's words times fixed odd 64-bit multipliers, mod 2**64.
    Equal bytes give equal fingerprints; integer arithmetic makes it independent of summation
    order and of BLAS."""
    words = _words(matrix)
    if words.dtype != np.uint64:
        words = words.astype(np.uint64)
    return np.einsum("ij,j->i", words, _multipliers(words.shape[1]))


@functools.lru_cache(maxsize=16)
def _multipliers(width: int) -> np.ndarray:
    """``(width,) uint64`` fixed odd multipliers (seeded), made once per width: the
    fingerprint of every batch uses them."""
    m = np.random.default_rng(0x5EED).integers(1, 2**63, size=width, dtype=np.uint64) | np.uint64(1)
    m.flags.writeable = False
    return m


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


@dataclass
class VideoEmbeddingIndex:
    """Master embeddings prepared for matching.

    Attributes:
        ids: ``(n,) str`` video ids.
        matrix: ``(n, d) float32`` embeddings as stored.
        sorted_fingerprints / order: ``(n,) uint64`` row fingerprints sorted (stable), and
            the row each came from (``(n,) int64``).
        unit: ``(n, d) float32`` L2-normalised rows (zero rows stay zero).
        basis: ``(d, k) float32`` orthonormal projection (top ``k`` principal axes).
        projected: ``(n, k) float32`` ``unit @ basis``.
        tree: k-d tree over ``projected`` (built on construction, ~30 ms for 50,000 rows).
    """

    ids: np.ndarray
    matrix: np.ndarray
    sorted_fingerprints: np.ndarray
    order: np.ndarray
    unit: np.ndarray
    basis: np.ndarray
    projected: np.ndarray
    tree: cKDTree | None = None

    def __post_init__(self):
        if self.tree is None:
            self.tree = cKDTree(self.projected)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    @classmethod
    def build(cls, ids: np.ndarray, matrix: np.ndarray, k: int = 8, seed: int = 0) -> VideoEmbeddingIndex:
        """Build from ``ids (n,)`` and ``matrix (n, d)``; ``k`` = projected dimensions."""
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        unit = _unit(matrix)
        k = int(min(k, matrix.shape[1]))
        # principal axes of (a sample of) the unit vectors: any orthonormal basis keeps the
        # lower bound exact; the principal one makes it tight
        rng = np.random.default_rng(seed)
        sample = unit[rng.choice(len(unit), size=min(len(unit), 20_000), replace=False)]
        _, _, vt = np.linalg.svd(sample - sample.mean(axis=0), full_matrices=False)
        basis = np.ascontiguousarray(vt[:k].T, dtype=np.float32)
        return cls._derive(np.asarray(ids, dtype=str), matrix, basis, unit)

    @classmethod
    def _derive(cls, ids: np.ndarray, matrix: np.ndarray, basis: np.ndarray, unit: np.ndarray | None = None) -> VideoEmbeddingIndex:
        """The index from its stored parts; fingerprints, their order, unit rows and the
        projection are always computed here, never
        read from a file, so an index written by another version cannot mis-order the lookup."""
        fingerprints = _fingerprints(matrix)
        order = np.argsort(fingerprints, kind="stable")
        unit = _unit(matrix) if unit is None else unit
        return cls(ids=ids, matrix=matrix, sorted_fingerprints=fingerprints[order], order=order,
                   unit=unit, basis=basis, projected=unit @ basis)

    def to_table(self) -> pa.Table:
        """The stored parts as an Arrow table, one row per master video: ``video_id`` (string)
        and ``embedding`` (``fixed_size_list<float32>[d]``, as stored in the master table); the
        projection basis ``(d, k) float32`` rides in the schema metadata (``basis``: little-endian
        bytes, ``basis_shape``: ``"d,k"``). Fingerprints, unit rows and the projection are derived
        again on load (:meth:`from_table`)."""
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(self.matrix.reshape(-1), pa.float32()), self.dim)
        table = pa.table({"video_id": pa.array(self.ids.tolist(), pa.string()), "embedding": embedding})
        d, k = self.basis.shape
        return table.replace_schema_metadata({"basis": self.basis.astype("<f4").tobytes(), "basis_shape": f"{d},{k}"})

    @classmethod
    def from_table(cls, table: pa.Table) -> VideoEmbeddingIndex:
        """The index from :meth:`to_table`'s table.

        Raises:
            BatchFormatError: a column or the basis metadata is missing or inconsistent.
        """
        meta = table.schema.metadata or {}
        try:
            d, k = (int(x) for x in meta[b"basis_shape"].decode().split(","))
            basis = np.frombuffer(meta[b"basis"], dtype="<f4").reshape(d, k).astype(np.float32)
            ids = np.asarray(table.column("video_id").to_pylist(), dtype=str)
            flat = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            matrix = np.ascontiguousarray(flat.reshape(len(ids), d), dtype=np.float32)
        except (KeyError, ValueError) as err:
            raise BatchFormatError(f"not a video embedding index table ({err})") from err
        return cls._derive(ids, matrix, basis)


_SLACK = 1e-5  # float32 rounding in projected coordinates


def _candidates(index: VideoEmbeddingIndex, qp: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """``(query row, master row)`` pairs whose projected distance is <= ``radius``: a
    superset of the pairs whose unit-vector distance is <= ``radius``. Range search in a k-d
    tree (``scipy.spatial.cKDTree.query_ball_point``) over the ``k``-d projected points."""
    found = index.tree.query_ball_point(qp, r=radius + _SLACK, return_sorted=False)
    counts = np.fromiter((len(f) for f in found), dtype=np.int64, count=len(found))
    if not counts.sum():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows = np.repeat(np.arange(len(qp)), counts)
    cols = np.fromiter((c for f in found for c in f), dtype=np.int64, count=int(counts.sum()))
    return rows, cols


def _exact_rows(index: VideoEmbeddingIndex, q: np.ndarray) -> np.ndarray:
    """``(n,) int64``: the lowest master row whose bytes equal each query row's, or -1."""
    fp = _fingerprints(q)
    sorted_fp, n = index.sorted_fingerprints, len(index.sorted_fingerprints)
    lo = np.searchsorted(sorted_fp, fp)
    hit = sorted_fp[np.minimum(lo, n - 1)] == fp
    tie = hit & (sorted_fp[np.minimum(lo + 1, n - 1)] == fp) & (lo + 1 < n)
    rows = np.full(len(q), -1, dtype=np.int64)
    master_words, query_words = _words(index.matrix), _words(q)
    single = np.flatnonzero(hit & ~tie)
    if single.size:
        cand = index.order[lo[single]]
        same = (master_words[cand] == query_words[single]).all(axis=1)
        rows[single[same]] = cand[same]
    for i in np.flatnonzero(tie):  # equal master rows, or a fingerprint collision
        j = lo[i]
        while j < n and sorted_fp[j] == fp[i]:  # ascending row order (stable sort)
            if np.array_equal(master_words[index.order[j]], query_words[i]):
                rows[i] = index.order[j]
                break
            j += 1
    return rows


@dataclass
class MatchResult:
    """Per query row: ``master_row (n,) int64`` (-1 = none), ``kind (n,) int8``
    (0 none, 1 exact, 2 approximate), ``similarity (n,) float32`` (1.0 for exact, NaN for none)."""

    master_row: np.ndarray
    kind: np.ndarray
    similarity: np.ndarray


def match_embeddings(index: VideoEmbeddingIndex, queries: np.ndarray, tolerance: float = 0.9999) -> MatchResult:
    """Match ``queries (n, d)`` to the master rows: exact bytes first, then the nearest
    neighbour by cosine similarity if it is >= ``tolerance`` (see module docstring).

    Raises:
        ValueError: ``queries`` is not ``(n, index.dim)`` or ``tolerance`` not in (0, 1].
    """
    if queries.ndim != 2 or queries.shape[1] != index.dim:
        raise ValueError(f"queries must be (n, {index.dim}), got {queries.shape}")
    if not 0 < tolerance <= 1:
        raise ValueError(f"tolerance must be in (0, 1], got {tolerance}")
    q = np.ascontiguousarray(queries, dtype=np.float32)
    n = len(q)
    master_row = np.full(n, -1, dtype=np.int64)
    kind = np.zeros(n, dtype=np.int8)
    similarity = np.full(n, np.nan, dtype=np.float32)

    exact_rows = _exact_rows(index, q)
    exact = exact_rows >= 0
    master_row[exact] = exact_rows[exact]
    kind[exact] = MATCH_EXACT
    similarity[exact] = 1.0

    rest = np.flatnonzero(~exact)
    if rest.size:
        qu = _unit(q[rest])
        rows, cols = _candidates(index, qu @ index.basis, radius=float(np.sqrt(2.0 * (1.0 - tolerance))))
        if rows.size:
            sims = np.einsum("ij,ij->i", qu[rows], index.unit[cols])
            ok = sims >= tolerance
            rows, cols, sims = rows[ok], cols[ok], sims[ok]
            best = np.lexsort((-sims, rows))  # best candidate per query row first
            rows, cols, sims = rows[best], cols[best], sims[best]
            first = np.r_[True, rows[1:] != rows[:-1]] if rows.size else np.zeros(0, bool)
            hit = rest[rows[first]]
            master_row[hit] = cols[first]
            kind[hit] = MATCH_APPROX
            similarity[hit] = sims[first]
    return MatchResult(master_row=master_row, kind=kind, similarity=similarity)


@dataclass
class CorrectionReport:
    """Counts for one batch, plus per-row ``video_id (n,) str`` ("" when unmatched), ``kind``,
    ``similarity`` (see :class:`MatchResult`) and ``changed (n,) bool``."""

    rows: int
    exact: int
    approximate: int
    unmatched: int
    no_targets: int
    targets_changed: int
    video_id: np.ndarray
    kind: np.ndarray
    similarity: np.ndarray
    changed: np.ndarray


def target_rows_for_master(index: VideoEmbeddingIndex, targets: TargetsTable) -> np.ndarray:
    """``(n_videos,) int64``: the targets row of each master video, -1 if it has none."""
    order = np.argsort(targets.ids)
    pos = np.searchsorted(targets.ids[order], index.ids)
    pos_c = np.minimum(pos, len(order) - 1)
    found = targets.ids[order][pos_c] == index.ids
    return np.where(found, order[pos_c], -1)


def correct_batch(
    batch: dict,
    index: VideoEmbeddingIndex,
    targets: TargetsTable,
    master_to_target: np.ndarray,
    *,
    tolerance: float = 0.9999,
    name: str = "batch",
) -> tuple[dict, CorrectionReport]:
    """Return a corrected copy of ``batch`` (same keys, shapes and dtypes) and its report.

    Matched rows whose video has a targets row get those targets (cast to the batch's targets
    dtype); unmatched rows, and rows whose video is absent from the targets table, keep theirs.

    Raises:
        BatchFormatError: the batch breaks the contract, or its targets width differs from the
            number of target columns.
    """
    validate_batch(batch, name, index.dim)
    old = batch["targets"]
    t = 1 if old.ndim == 1 else old.shape[1]
    if t != len(targets.columns):
        raise BatchFormatError(f"{name}: targets has {t} column(s), the targets table has {len(targets.columns)}: {targets.columns}")
    match = match_embeddings(index, batch["video_embeddings"], tolerance)
    matched = match.master_row >= 0
    trow = np.where(matched, master_to_target[np.maximum(match.master_row, 0)], -1)
    has_target = trow >= 0
    new = old.copy()
    values = targets.values[trow[has_target]]
    new[has_target] = (values[:, 0] if old.ndim == 1 else values).astype(old.dtype)
    changed = np.any((new != old).reshape(len(old), -1), axis=1)
    corrected = dict(batch)
    corrected["targets"] = new
    video_id = np.where(matched, index.ids[np.maximum(match.master_row, 0)], "")
    report = CorrectionReport(
        rows=len(old),
        exact=int((match.kind == MATCH_EXACT).sum()),
        approximate=int((match.kind == MATCH_APPROX).sum()),
        unmatched=int((~matched).sum()),
        no_targets=int((matched & ~has_target).sum()),
        targets_changed=int(changed.sum()),
        video_id=video_id,
        kind=match.kind,
        similarity=match.similarity,
        changed=changed,
    )
    return corrected, report
