"""Msgpack encoding of Arrow arrays a column at a time, with no Python object per value.

``encode(array)`` gives one msgpack document per element, as ``large_binary``: what
``msgpack.packb(array.to_pylist()[i])`` would decode to (a struct as the array of its fields),
built by Arrow kernels and numpy. Ints, strings and container headers take their shortest
msgpack form, as msgpack's own packer writes them. ``join`` concatenates documents
element-wise and ``array_headers``/``map_headers`` start containers, so the caller assembles
larger documents from column parts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BINARY = pa.large_binary()
NIL = b"\xc0"


def constant(document: bytes) -> pa.Scalar:
    """A document every element shares (a header, a nil), for ``join``."""
    return pa.scalar(document, BINARY)


def array_header(length: int) -> bytes:
    """The start of a msgpack array of ``length`` elements."""
    if length < 16:
        return bytes([0x90 | length])
    return b"\xdd" + length.to_bytes(4, "big")


def map_header(length: int) -> bytes:
    """The start of a msgpack map of ``length`` pairs."""
    if length < 16:
        return bytes([0x80 | length])
    return b"\xdf" + length.to_bytes(4, "big")


def join(parts: Sequence[pa.Array | pa.Scalar]) -> pa.Array:
    """Element-wise concatenation of documents (arrays of equal length, or constants)."""
    joined: pa.Array = pc.binary_join_element_wise(*parts, constant(b""))
    return joined


def joined_runs(documents: pa.Array, offsets: np.ndarray) -> pa.Array:
    """``documents[offsets[i]:offsets[i+1]]`` concatenated, for each i."""
    lists = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), documents)
    runs: pa.Array = pc.binary_join(lists, constant(b""))
    return runs


def tagged(tag: int, values: np.ndarray) -> pa.Array:
    """One byte ``tag`` then each value's big-endian bytes (the fixed-width msgpack forms)."""
    count = len(values)
    width = values.dtype.itemsize
    buffer = np.empty((count, 1 + width), dtype=np.uint8)
    buffer[:, 0] = tag
    big_endian = values.astype(values.dtype.newbyteorder(">"), copy=False)
    buffer[:, 1:] = big_endian.view(np.uint8).reshape(count, width)
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(1 + width), count, [None, pa.py_buffer(buffer)]
    )
    return fixed.cast(BINARY)


# The forms of a number, shortest first: (upper bound, tag or None, stored type, added to
# the value). A value takes the first form whose bound it is below; None stores the number
# in the tag byte itself (fixint, fixstr, fixarray, fixmap).
Forms = tuple[tuple[int, int | None, str, int], ...]
_UNSIGNED_INTS: Forms = ((128, None, "u1", 0), (256, 0xCC, "u1", 0), (2**16, 0xCD, ">u2", 0))
_UNSIGNED_INTS += ((2**32, 0xCE, ">u4", 0), (2**63, 0xD3, ">i8", 0))
_STR_HEADERS: Forms = ((32, None, "u1", 0xA0), (256, 0xD9, "u1", 0), (2**16, 0xDA, ">u2", 0))
_STR_HEADERS += ((2**32, 0xDB, ">u4", 0),)
_BIN_HEADERS: Forms = ((256, 0xC4, "u1", 0), (2**16, 0xC5, ">u2", 0), (2**32, 0xC6, ">u4", 0))
_ARRAY_HEADERS: Forms = ((16, None, "u1", 0x90), (2**16, 0xDC, ">u2", 0), (2**32, 0xDD, ">u4", 0))
_MAP_HEADERS: Forms = ((16, None, "u1", 0x80), (2**16, 0xDE, ">u2", 0), (2**32, 0xDF, ">u4", 0))
_BOOLEANS: Forms = ((2, None, "u1", 0xC2),)  # false 0xC2, true 0xC3


def _shortest(values: np.ndarray, forms: Forms) -> pa.Array:
    """Each value (int64, none negative) in the first of ``forms`` it fits."""
    count = len(values)
    choice = np.searchsorted(np.array([bound for bound, *_ in forms]), values, side="right")
    if count and choice.max() >= len(forms):
        raise ValueError(f"a value of {int(values.max())} has no msgpack form here")
    widths = np.array([(tag is not None) + np.dtype(kind).itemsize for _, tag, kind, _ in forms])
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(widths[choice], out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    for form, (_, tag, kind, added) in enumerate(forms):
        rows = np.flatnonzero(choice == form)
        if not len(rows):
            continue
        at = offsets[rows]
        if tag is not None:
            data[at] = tag
            at = at + 1
        stored = (values[rows] + added).astype(kind).view(np.uint8).reshape(len(rows), -1)
        data[at[:, None] + np.arange(stored.shape[1])] = stored
    return pa.LargeBinaryArray.from_buffers(
        BINARY, count, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _ints(values: np.ndarray) -> pa.Array:
    """Signed ints: non-negative ones as msgpack's packer writes them, others as int 64."""
    negative = values < 0
    if not negative.any():
        return _shortest(values, _UNSIGNED_INTS)
    return pc.if_else(
        pa.array(negative),
        tagged(0xD3, values),
        _shortest(np.where(negative, 0, values), _UNSIGNED_INTS),
    )


def array_headers(lengths: np.ndarray) -> pa.Array:
    """The start of a msgpack array of each of ``lengths`` elements."""
    return _shortest(lengths.astype(np.int64), _ARRAY_HEADERS)


def map_headers(lengths: np.ndarray) -> pa.Array:
    """The start of a msgpack map of each of ``lengths`` pairs."""
    return _shortest(lengths.astype(np.int64), _MAP_HEADERS)


def repeated(document: bytes, count: int) -> pa.Array:
    """``document`` ``count`` times."""
    return pa.array([document], BINARY).take(pa.array(np.zeros(count, dtype=np.int64)))


def encode(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each element of ``column`` as a msgpack document (``NIL`` for a null)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = array.type
    if pa.types.is_dictionary(kind):
        return encode(array.dictionary_decode())
    if pa.types.is_null(kind):
        return repeated(NIL, len(array))
    encoded = _encode_valid(array)
    if array.null_count:
        encoded = pc.if_else(array.is_null(), constant(NIL), encoded)
    return encoded


def _encode_valid(array: pa.Array) -> pa.Array:
    """The documents of ``array``'s elements, whatever they hold under a null."""
    kind = array.type
    if pa.types.is_boolean(kind):
        flags = array.fill_null(False).to_numpy(zero_copy_only=False)
        return _shortest(flags.astype(np.int64), _BOOLEANS)
    if pa.types.is_signed_integer(kind) or pa.types.is_unsigned_integer(kind):
        if kind == pa.uint64():
            return tagged(0xCF, array.fill_null(0).to_numpy().astype(np.uint64))
        return _ints(array.fill_null(0).to_numpy().astype(np.int64))
    if pa.types.is_floating(kind):
        return tagged(0xCB, array.fill_null(0).to_numpy().astype(np.float64))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or _is_string_view(kind):
        return _sized(_STR_HEADERS, array.cast(pa.large_string()).cast(BINARY))
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return _sized(_BIN_HEADERS, array.cast(BINARY))
    if pa.types.is_struct(kind):
        fields = [encode(pc.struct_field(array, [i])) for i in range(kind.num_fields)]
        return join([constant(array_header(kind.num_fields)), *fields])
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        lengths = pc.list_value_length(array).fill_null(0).to_numpy().astype(np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        items = joined_runs(encode(array.flatten()), offsets)
        return join([array_headers(lengths), items])
    raise TypeError(f"no msgpack encoding for Arrow type {kind}")


def _sized(headers: Forms, payload: pa.Array) -> pa.Array:
    """A header holding the length, then the bytes (str and bin)."""
    lengths = pc.binary_length(payload).fill_null(0).to_numpy().astype(np.int64)
    return join([_shortest(lengths, headers), payload.fill_null(b"")])


def _is_string_view(kind: pa.DataType) -> bool:
    is_view = getattr(pa.types, "is_string_view", None)
    return bool(is_view and is_view(kind))
