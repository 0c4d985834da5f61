"""Exporting a found network for a device: folded, quantised, bit-packed, in C.

`export_c(arch, variables, fmt, out_dir)` writes a self-contained C99 project:
``model.h`` (generated: the op list, arena offsets and the weights packed at
E + M + 1 bits), ``jnas_runtime.c`` / ``jnas_runtime.h`` (the portable
runtime, no heap) and ``main.c`` (a driver), plus ``manifest.json``. Modules:
`fold` (BatchNorm folding), `pack` (codes and bit packing), `plan` (the
activation arena), `c_model` (the generated header).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from jnas import arch as arch_lib
from jnas import cost, precision
from jnas.export import c_model, fold, pack, plan
from jnas.export.fold import Folded

__all__ = ["Folded", "c_model", "export_c", "fold", "inference_model", "pack", "plan"]


def inference_model(
    arch: arch_lib.Arch, variables: dict[str, Any], fmt: precision.FloatFormat | None
) -> Folded:
    """The folded network with every stored value rounded to ``fmt``.

    What the exported C program computes (up to float32 summation order), and
    what `jnas.nn` runs for comparison: ``nn.apply(nn.create_model(f.arch),
    f.variables, images)``.
    """
    return fold.round_values(fold.fold(arch, variables), fmt)


def export_c(
    arch: arch_lib.Arch,
    variables: dict[str, Any],
    fmt: precision.FloatFormat | str | None,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Writes the C project of a trained network in ``fmt`` (None: float32).

    Returns:
      The manifest (also ``out_dir/manifest.json``): format, weight bytes
      (asserted equal to ``cost.memory_bytes(arch, fmt, "folded")``), arena
      bytes (equal to ``cost.peak_activation_bytes`` of the folded network in
      float32 where the planner packs it without gaps; both are written).
    """
    fmt = precision.FLOAT32 if fmt is None else precision.as_format(fmt)
    folded = inference_model(arch, variables, fmt)
    text, facts = c_model.header(folded, fmt, strict_plan=False)
    want = cost.memory_bytes(arch, fmt, "folded")
    if facts["weight_bytes"] != want:
        raise AssertionError(
            f"packed weights are {facts['weight_bytes']} bytes, cost.memory_bytes "
            f"(folded) says {want}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.h").write_text(text)
    (out / "main.c").write_text(c_model.MAIN_C)
    for name in ("jnas_runtime.c", "jnas_runtime.h"):
        shutil.copyfile(c_model.RUNTIME_DIR / name, out / name)
    manifest = {
        "arch_hash": arch.hash,
        "format": str(fmt),
        "weight_bytes": facts["weight_bytes"],
        "stored_values": facts["values"],
        "arena_bytes": 4 * facts["arena_floats"],
        "peak_activation_bytes": 4 * facts["peak_floats"],
        # RAM besides the arena: one layer's decoded values and one pixel's
        # accumulators (jnas_runtime.c says why weights are decoded per layer).
        "scratch_bytes": 4 * (facts["scratch_floats"] + facts["accumulator_floats"]),
        "affine_batchnorms": list(folded.affine),
        "input": "float32 HWC image, normalised as in training",
        "build": "cc -std=c99 -O2 -DJNAS_MODEL='\"model.h\"' jnas_runtime.c main.c "
        "-o model -lm",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
