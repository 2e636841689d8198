"""Tree models compiled to native code with TL2cgen, cached on disk under a hash of the model.

Treelite's GTIL walks the trees in a generic interpreter. TL2cgen writes the same trees out as C (one nested
if/else per tree, comparing quantized thresholds: ``CODEGEN_PARAMS``) and gcc turns them into a shared library,
with a loop of ours over the rows (``ROWS_SOURCE``: a block of rows through one group of trees at a time). On
the demo's 200-tree model and its own traffic, in warm loops on a machine at rest, before quantizing: one row
16 µs against 107 µs in GTIL and 1.6 ms in sklearn; 64 rows 0.42 ms against 1.5 ms and 2.6 ms; 1,000 rows 6-10
ms against 23 ms and 11 ms (real rows run deep into the trees); quantizing halved both again. Inside the
service, where other code runs between requests, one row took ~60 µs (the 200 trees' code does not stay in the
CPU's caches). Compiling takes a few seconds (3.7 s for that model at ``-O1``, which predicts as fast as ``-O3``
and compiles in half the time), so callers do it off the request path, and the library is kept in a cache folder
named by the model's serialized bytes, the code generation settings and the loop's source: a restart, a rollback
to a model served before or a second worker loads it in milliseconds.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

COMPILER = "gcc"
COMPILER_OPTIONS = ["-O1"]
# TL2cgen's code generation: the trees split over 4 files (compiled one after the other, see below), and
# thresholds quantized: each row's values are turned into threshold indices once (a binary search per feature),
# and the trees compare integers. On the demo's model and traffic: 1,000 rows 3.1 against 6.3 ms, one row 7.4
# against 13.4 µs, the same probabilities.
CODEGEN_PARAMS = {"parallel_comp": 4, "quantize": 1}


class NativeUnavailableError(RuntimeError):
    """The model cannot be compiled here (no compiler, or TL2cgen refused it); GTIL keeps scoring."""


class NativeTrees:
    """``trees(x)``: the model's probabilities for the float64 matrix ``x``, from the compiled library.

    Rows go straight to the functions TL2cgen generated (what its ``predict(union Entry* row, int pred_margin,
    double* out)`` calls for one row), through a loop in C compiled with them (``ROWS_SOURCE``: TL2cgen's Python
    ``Predictor`` spends about 40 µs per call in wrappers around ``predict``, and a ctypes call per row costs
    more than a row's trees). An ``Entry`` is a union of a double and an int flag (-1: missing); NaN is written
    as the missing flag, as TL2cgen's own data matrix does.
    (TL2cgen's encoding also reads a present value whose low 32 bits are all ones as missing; its Predictor
    shares that.)
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
        try:
            self._predict = lib.skewless_predict_rows
        except AttributeError as exc:
            raise NativeUnavailableError(f"{library.name} has no skewless_predict_rows") from exc
        self._predict.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
        self._predict.restype = None
        self._features = int(lib.get_num_feature())
        self._lib = lib  # keeps the library loaded as long as this object lives
        self.library = library

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype="float64")
        if x.ndim != 2 or x.shape[1] != self._features:
            raise ValueError(f"native trees take {self._features} columns, got shape {x.shape}")
        out = np.empty(len(x), dtype="float64")
        self._predict(x.ctypes.data, len(x), out.ctypes.data)
        return out


# Compiled with the generated trees: all rows in one call, a block of rows at a time and, within a block, TL2cgen's
# units of trees (``predict_unit<k>``, declared in its header) one after the other over every row. A row going
# through all 200 trees at once (TL2cgen's ``predict``) ran through ~230 KB of branches, more than the CPU's
# instruction caches hold, for every row; a unit over a block keeps its code hot. On the demo's model and the
# rows of a 1,000-transaction batch (its own 1,000 and the reasons' ~1,400 variants), in warm loops: 4.4 against
# 6.1 ms, the same probabilities. Each row is prepared as ``predict`` prepares it (NaN as the missing flag, then
# quantized), each row's leaves are added in the same tree order, then the model's base score and the sigmoid
# (``postprocess``): the same arithmetic in the same order. ``{UNITS}`` and ``{BASE_SCORE}`` are filled in per
# model (``_rows_source``).
ROWS_SOURCE = """
#include "header.h"

extern const unsigned char is_categorical[];
typedef void (*unit_fn)(union Entry*, double*);
static const unit_fn units[] = { {UNITS} };
#define N_UNITS (sizeof(units) / sizeof(units[0]))
#define BLOCK 256

void skewless_predict_rows(const double* x, int64_t n, double* out) {
  const int32_t width = get_num_feature();
  const int64_t block = n < BLOCK ? (n > 0 ? n : 1) : BLOCK;
  union Entry* rows = (union Entry*)malloc(sizeof(union Entry) * (width > 0 ? width : 1) * block);
  if (rows == NULL) {
    for (int64_t i = 0; i < n; ++i) out[i] = NAN;
    return;
  }
  for (int64_t start = 0; start < n; start += block) {
    const int64_t m = n - start < block ? n - start : block;
    for (int64_t r = 0; r < m; ++r) {
      const double* values = x + (start + r) * width;
      union Entry* row = rows + r * width;
      for (int32_t j = 0; j < width; ++j) {
        if (isnan(values[j])) {
          row[j].fvalue = 0.0;
          row[j].missing = -1;
        } else {
          row[j].fvalue = values[j];
        }
        if (row[j].missing != -1 && !is_categorical[j]) {
          row[j].qvalue = quantize(row[j].fvalue, j);
        }
      }
      out[start + r] = 0.0;
    }
    for (size_t u = 0; u < N_UNITS; ++u) {
      for (int64_t r = 0; r < m; ++r) units[u](rows + r * width, out + start + r);
    }
    for (int64_t r = 0; r < m; ++r) {
      out[start + r] += {BASE_SCORE};
      postprocess(out + start + r);
    }
  }
  free(rows);
}
"""


def library_path(model: Any, cache_dir: Path) -> Path:
    import tl2cgen

    digest = hashlib.sha256(model.serialize_bytes())
    digest.update(f"tl2cgen {tl2cgen.__version__} {COMPILER} {' '.join(COMPILER_OPTIONS)}".encode())
    digest.update(json.dumps(CODEGEN_PARAMS, sort_keys=True).encode())
    digest.update(ROWS_SOURCE.encode())
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
        with tempfile.TemporaryDirectory() as sources:
            tl2cgen.generate_c_code(model, sources, params=CODEGEN_PARAMS)
            _add_source(Path(sources), "skewless_rows", _rows_source(Path(sources), model))
            # One compiler job (nthread=1): this runs beside a serving process and must leave it a core.
            built = tl2cgen.create_shared(COMPILER, sources, nthread=1, options=COMPILER_OPTIONS)
            shutil.move(built, partial)
        os.replace(partial, path)
    except Exception as exc:
        raise NativeUnavailableError(f"TL2cgen could not compile the model: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return path


def _rows_source(sources: Path, model: Any) -> str:
    """``ROWS_SOURCE`` for this model: the units TL2cgen declared in its header, in order, and the base score its
    ``predict`` adds (Treelite's ``base_scores``: one, for a single-output binary model)."""
    header = (sources / "header.h").read_text()
    numbers = sorted(int(k) for k in re.findall(r"\bvoid predict_unit(\d+)\(", header))
    if not numbers:
        raise NativeUnavailableError("TL2cgen's code declares no predict units")
    base = np.asarray(model.get_header_accessor().get_field("base_scores"), dtype="float64")
    if base.shape != (1,):
        raise NativeUnavailableError(f"{base.size} base scores: not a single-output binary model")
    units = ", ".join(f"predict_unit{k}" for k in numbers)
    return ROWS_SOURCE.replace("{UNITS}", units).replace("{BASE_SCORE}", repr(float(base[0])))


def _add_source(sources: Path, name: str, code: str) -> None:
    """One more C file in TL2cgen's build recipe, compiled and linked with the generated trees."""
    (sources / f"{name}.c").write_text(code)
    recipe_path = sources / "recipe.json"
    recipe = json.loads(recipe_path.read_text())
    recipe["sources"].append({"name": name, "length": code.count("\n")})
    recipe_path.write_text(json.dumps(recipe))
