"""Just enough of the GGUF format to read a file's metadata: llama.cpp runs a GGUF, whose weight dtype the table
must show next to the other engines' dtype (llama-cpp-python lives in its own venv, not this one)."""
from __future__ import annotations

import os
import struct
from pathlib import Path

# llama.cpp's LLAMA_FTYPE values for general.file_type.
GGUF_FILE_TYPES = {0: "float32", 1: "float16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1",
                   10: "q2_k", 11: "q3_k_s", 14: "q4_k_s", 15: "q4_k_m", 16: "q5_k_s", 17: "q5_k_m", 18: "q6_k",
                   32: "bfloat16"}
_GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_metadata(path: str | Path, wanted: set[str]) -> dict:
    """The `wanted` keys of a GGUF file's metadata (stops reading once all are found). Raises ValueError when the
    file is not GGUF."""
    found: dict = {}
    with open(path, "rb") as f:
        def read(fmt):
            size = struct.calcsize(fmt)
            data = f.read(size)
            if len(data) != size:
                raise ValueError(f"{path}: truncated GGUF header")
            return struct.unpack(fmt, data)[0]

        def read_str() -> str:
            n = read("<Q")
            return f.read(n).decode("utf-8", "replace")

        def read_value(kind):
            if kind in _GGUF_SCALAR:
                return read(_GGUF_SCALAR[kind])
            if kind == _GGUF_STRING:
                return read_str()
            if kind == _GGUF_ARRAY:
                elem, n = read("<I"), read("<Q")
                if elem in _GGUF_SCALAR:                 # skip scalar arrays without decoding them
                    f.seek(n * struct.calcsize(_GGUF_SCALAR[elem]), os.SEEK_CUR)
                    return None
                for _ in range(n):
                    read_value(elem)
                return None
            raise ValueError(f"{path}: unknown GGUF value type {kind}")

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        version = read("<I")
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is too old")
        read("<Q")                                       # tensor count
        for _ in range(read("<Q")):
            key = read_str()
            value = read_value(read("<I"))
            if key in wanted:
                found[key] = value
                if len(found) == len(wanted):
                    break
    return found


def gguf_dtype(path: str | Path) -> str:
    try:
        ftype = gguf_metadata(path, {"general.file_type"}).get("general.file_type")
    except (OSError, ValueError):
        return "gguf"
    return GGUF_FILE_TYPES.get(ftype, f"gguf ftype {ftype}") if ftype is not None else "gguf"
