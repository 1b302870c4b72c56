"""What an InsightFace .onnx file is for, read from its graph without onnx or onnxruntime.

InsightFace decides a model's role from its graph signature (insightface/model_zoo/model_zoo.py,
ModelRouter): five or more outputs is a detector, a square input of at least 112 px (a multiple
of 16) is a recognizer, 192 px is a landmark model, 96 px a gender/age model. File names say
nothing reliable (the test pack's recognizer is `mobilefacenet.onnx`), so this reads the same
signature straight from the protobuf wire format: the setup commands can then check a pack
without loading the ML stack, and a truncated file shows up as unreadable.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DETECTION = "detection"
RECOGNITION = "recognition"

# Field numbers from onnx/onnx.proto.
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 5, 11, 12
_TENSOR_NAME = 8
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR, _TENSOR_SHAPE, _SHAPE_DIM, _DIM_VALUE = 1, 2, 1, 1


@dataclass(frozen=True)
class GraphSignature:
    input_shapes: tuple[tuple[int | None, ...], ...]  # real inputs only, not initializers
    output_count: int


def onnx_role(path: Path) -> str | None:
    """ "detection", "recognition", "landmark", "attribute", "swapper", or None (unknown or unreadable)."""
    try:
        signature = read_signature(path)
    except (OSError, ValueError, IndexError):
        return None
    if signature.output_count >= 5:
        return DETECTION
    if not signature.input_shapes or len(signature.input_shapes[0]) != 4:
        return None
    height, width = signature.input_shapes[0][2:]
    if height == width == 192:
        return "landmark"
    if height == width == 96:
        return "attribute"
    if len(signature.input_shapes) == 2 and height == width == 128:
        return "swapper"
    if height is not None and height == width and height >= 112 and height % 16 == 0:
        return RECOGNITION
    return None


def read_signature(path: Path) -> GraphSignature:
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        graph = next((value for field, value in _fields(buffer, 0, len(buffer)) if field == _MODEL_GRAPH), None)
        if not isinstance(graph, tuple):
            raise ValueError(f"{path.name} has no ONNX graph")
        initializers: set[bytes] = set()
        inputs: list[tuple[bytes, tuple[int | None, ...]]] = []
        outputs = 0
        for field, value in _fields(buffer, *graph):
            if not isinstance(value, tuple):
                continue
            if field == _GRAPH_INITIALIZER:
                initializers.add(_string_field(buffer, value, _TENSOR_NAME))
            elif field == _GRAPH_INPUT:
                inputs.append((_string_field(buffer, value, _VALUE_NAME), _input_shape(buffer, value)))
            elif field == _GRAPH_OUTPUT:
                outputs += 1
    # Old exporters list the weights among the inputs too; onnxruntime (and so InsightFace) skips them.
    real = tuple(shape for name, shape in inputs if name not in initializers)
    return GraphSignature(input_shapes=real, output_count=outputs)


def _input_shape(buffer: mmap.mmap, value_info: tuple[int, int]) -> tuple[int | None, ...]:
    type_proto = _message_field(buffer, value_info, _VALUE_TYPE)
    tensor = _message_field(buffer, type_proto, _TYPE_TENSOR) if type_proto else None
    shape = _message_field(buffer, tensor, _TENSOR_SHAPE) if tensor else None
    if shape is None:
        return ()
    dims: list[int | None] = []
    for field, dim in _fields(buffer, *shape):
        if field == _SHAPE_DIM and isinstance(dim, tuple):
            size = next((v for f, v in _fields(buffer, *dim) if f == _DIM_VALUE and isinstance(v, int)), None)
            dims.append(size)  # None: a named (dynamic) dimension
    return tuple(dims)


def _message_field(buffer: mmap.mmap, span: tuple[int, int], number: int) -> tuple[int, int] | None:
    return next((v for f, v in _fields(buffer, *span) if f == number and isinstance(v, tuple)), None)


def _string_field(buffer: mmap.mmap, span: tuple[int, int], number: int) -> bytes:
    found = _message_field(buffer, span, number)
    return bytes(buffer[found[0] : found[1]]) if found else b""


def _fields(buffer: mmap.mmap, start: int, end: int) -> Iterator[tuple[int, int | tuple[int, int]]]:
    """(field number, varint value or (start, end) of a length-delimited value) for one message."""
    pos = start
    while pos < end:
        key, pos = _varint(buffer, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buffer, pos)
            yield field, value
        elif wire == 2:
            length, pos = _varint(buffer, pos)
            if pos + length > end:
                raise ValueError("truncated ONNX file")
            yield field, (pos, pos + length)
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"not an ONNX file (wire type {wire})")
    if pos != end:
        raise ValueError("truncated ONNX file")


def _varint(buffer: mmap.mmap, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buffer[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("not an ONNX file (bad varint)")
