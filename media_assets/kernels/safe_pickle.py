"""Loading untrusted pickles with an allow-list unpickler.

A pickle can name any importable callable and call it (``os.system``, ``pandas.read_pickle``
on another file, ...). :func:`safe_loads` resolves only the globals listed in
:data:`ALLOWED_GLOBALS` -- what numpy arrays, numpy scalars/dtypes, pandas DataFrames/Series/
Index of numeric, string and object columns, and plain builtin containers need -- and raises
:class:`UnsafePickleError` naming the first other global before anything is called. The
approach is the one the Python docs recommend ("Restricting Globals", pickle module docs).
"""

from __future__ import annotations

import io
import pickle
from typing import Any

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    # builtins and stdlib containers
    ("_codecs", "encode"), ("builtins", "slice"), ("builtins", "complex"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "bytearray"), ("builtins", "range"), ("collections", "OrderedDict"),
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "timedelta"), ("datetime", "timezone"),
    # numpy (both the numpy<2 "core" and numpy>=2 "_core" module paths)
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    # protocol 2 spells builtins "__builtin__"
    ("__builtin__", "slice"), ("__builtin__", "bytearray"), ("__builtin__", "set"), ("__builtin__", "frozenset"),
    # pandas DataFrame / Series / Index of plain dtypes (pandas 2 and 3 spellings)
    ("pandas", "DataFrame"), ("pandas", "Series"), ("pandas", "Index"), ("pandas", "RangeIndex"),
    ("pandas", "MultiIndex"), ("pandas", "StringDtype"), ("pandas", "NA"), ("pandas.arrays", "ArrowStringArray"),
    # pyarrow buffers behind pandas 3's default string columns (data constructors only)
    ("pyarrow.lib", "_restore_array"), ("pyarrow.lib", "py_buffer"), ("pyarrow.lib", "type_for_alias"),
    ("pandas.core.frame", "DataFrame"), ("pandas.core.series", "Series"),
    ("pandas.core.internals.managers", "BlockManager"), ("pandas.core.internals.managers", "SingleBlockManager"),
    ("pandas.core.internals.blocks", "new_block"), ("pandas._libs.internals", "_unpickle_block"),
    ("pandas.core.indexes.base", "_new_Index"), ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.range", "RangeIndex"), ("pandas.core.indexes.multi", "MultiIndex"),
    ("pandas.core.arrays.string_", "StringArray"), ("pandas.core.arrays.string_", "StringDtype"),
    ("pandas.core.arrays.arrow.array", "ArrowExtensionArray"), ("pandas.core.arrays.string_arrow", "ArrowStringArray"),
    ("pandas.core.dtypes.dtypes", "NumpyEADtype"),
    ("pandas._libs.internals", "BlockPlacement"),
})

_NUMPY_DTYPE_MODULES = ("numpy.dtypes",)  # numpy>=1.25 dtype classes, e.g. numpy.dtypes.Float32DType


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global outside the allow-list (nothing was called)."""


def _bytearray(source: Any = b"", *args: Any) -> bytearray:
    """``bytearray`` for unpickling: from bytes or a string (what pickles of a bytearray hold),
    never from a size: ``bytearray(10**11)`` in a 40-byte pickle would zero 100 GB."""
    if not isinstance(source, (bytes, bytearray, str)):
        raise UnsafePickleError(f"refusing bytearray({type(source).__name__}): a pickled bytearray is built from its bytes, not a size")
    return bytearray(source, *args)


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only :data:`ALLOWED_GLOBALS` (and
    ``bytearray`` only from bytes)."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name == "bytearray":
            return _bytearray
        if (module, name) in ALLOWED_GLOBALS or (module in _NUMPY_DTYPE_MODULES and name.endswith("DType")):
            return super().find_class(module, name)
        raise UnsafePickleError(f"refusing to load global {module}.{name}: not a numpy/pandas/builtin data type")


def safe_loads(data: bytes) -> Any:
    """Unpickle ``data`` admitting only the allow-listed data types.

    Raises:
        UnsafePickleError: a global outside the allow-list is referenced, or a bytearray is
            made from a size.
        pickle.UnpicklingError, EOFError, ValueError: the data is not a valid pickle.
    """
    return RestrictedUnpickler(io.BytesIO(data)).load()
