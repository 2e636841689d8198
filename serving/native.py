"""Tree models compiled to native code with TL2cgen, cached on disk under a hash of the model.

Treelite's GTIL walks the trees in a generic interpreter. TL2cgen writes the same trees out as C (one nested
if/else per tree) and gcc turns them into a shared library. On the demo's 200-tree model and its own traffic: one
row 16 µs against 107 µs in GTIL and 1.6 ms in sklearn; 64 rows 0.42 ms against 1.5 ms and 2.6 ms; 1,000 rows
6-10 ms against 23 ms and 11 ms (real rows run deep into the trees). Those are warm loops: inside the service,
where other code runs between requests, one row took ~60 µs (the 200 trees' code does not stay in the CPU's
caches). Compiling takes a few seconds (3.7 s for
that model at ``-O1``, which predicts as fast as ``-O3`` and compiles in half the time), so callers do it off
the request path, and the
library is kept in a cache folder named by the model's serialized bytes: a restart, a rollback to a model served
before or a second worker loads it in milliseconds.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

COMPILER = "gcc"
COMPILER_OPTIONS = ["-O1"]
# An Entry whose int member is -1 and double bytes otherwise zero: little-endian, the int is the low word.
MISSING = 0xFFFFFFFF


class NativeUnavailableError(RuntimeError):
    """The model cannot be compiled here (no compiler, or TL2cgen refused it); GTIL keeps scoring."""


class NativeTrees:
    """``trees(x)``: the model's probabilities for the float64 matrix ``x``, from the compiled library.

    Rows go straight to the generated ``predict(union Entry* row, int pred_margin, double* out)``, TL2cgen's C
    interface for deployed models, one ctypes call a row: TL2cgen's Python ``Predictor`` spends about 40 µs per
    call in wrappers around the same function. An ``Entry`` is a union of a double and an int flag (-1: missing),
    8 bytes, so a row of float64 is already an array of entries; NaN is written as the missing flag, as
    TL2cgen's own data matrix does. (TL2cgen's encoding also reads a present value whose low 32 bits are all
    ones as missing; its Predictor shares that.)
    """

    def __init__(self, library: Path) -> None:
        try:
            lib = ctypes.CDLL(str(library))
        except OSError as exc:  # a damaged or foreign file in the cache
            raise NativeUnavailableError(f"{library.name} does not load: {exc}") from exc
        lib.get_num_feature.restype = ctypes.c_int32
        lib.get_threshold_type.restype = ctypes.c_char_p
        lib.get_leaf_output_type.restype = ctypes.c_char_p
        types = (lib.get_threshold_type(), lib.get_leaf_output_type())
        if types != (b"float64", b"float64"):
            raise NativeUnavailableError(f"{library.name}: thresholds and leaves are {types}, not float64")
        lib.get_num_target.restype = ctypes.c_int32
        classes = ctypes.c_int32()
        lib.get_num_class(ctypes.byref(classes))
        if lib.get_num_target() != 1 or classes.value != 1:
            raise NativeUnavailableError(f"{library.name}: not a single-output binary model")
        self._predict = lib.predict
        self._predict.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        self._predict.restype = None
        self._features = int(lib.get_num_feature())
        self._lib = lib  # keeps the library loaded as long as this object lives
        self.library = library

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype="float64")
        if x.ndim != 2 or x.shape[1] != self._features:
            raise ValueError(f"native trees take {self._features} columns, got shape {x.shape}")
        missing = np.isnan(x)
        if missing.any():
            x = x.copy()
            x.view(np.int64)[missing] = MISSING
        n = len(x)
        out = np.zeros(n, dtype="float64")
        predict, row, step, result = self._predict, x.ctypes.data, x.strides[0], out.ctypes.data
        for i in range(n):
            predict(row + i * step, 0, result + 8 * i)
        return out


def library_path(model: Any, cache_dir: Path) -> Path:
    import tl2cgen

    digest = hashlib.sha256(model.serialize_bytes())
    digest.update(f"tl2cgen {tl2cgen.__version__} {COMPILER} {' '.join(COMPILER_OPTIONS)}".encode())
    return cache_dir / f"trees-{digest.hexdigest()[:32]}.so"


def compile_library(model: Any, cache_dir: Path) -> Path:
    """The model's shared library: from the cache, or compiled into it (written aside, then renamed in)."""
    path = library_path(model, cache_dir)
    if path.is_file():
        return path
    if shutil.which(COMPILER) is None:
        raise NativeUnavailableError(f"no C compiler ({COMPILER}) on PATH")
    import tl2cgen

    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.so")
    try:
        # One compiler job (nthread=1): this runs beside a serving process and must leave it a core.
        tl2cgen.export_lib(
            model,
            toolchain=COMPILER,
            libpath=str(partial),
            params={"parallel_comp": 4},
            nthread=1,
            options=COMPILER_OPTIONS,
        )
        os.replace(partial, path)
    except Exception as exc:
        raise NativeUnavailableError(f"TL2cgen could not compile the model: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return path
