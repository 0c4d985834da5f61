"""Exports a found network to run on a device: folded, quantised, bit-packed C99.

    python -m launch.export --workdir=runs/quickstart --candidate=HASH --out=export/
    cd export && cc -std=c99 -O2 -DJNAS_MODEL='"model.h"' jnas_runtime.c main.c \\
        -o model -lm

``--candidate`` is a record's hash (or a unique prefix of it); ``--format`` is
the number format of the stored values: "custom" (the candidate's own, from
its format search; the default), "half", "float32" or any "eEmM". The
weights are stored at E + M + 1 bits each (``manifest.json`` gives the bytes,
equal to ``jnas.cost.memory_bytes(arch, fmt, "folded")``), activations in
one float32 arena (``jnas.export``). ``--onnx`` also writes ``model.onnx``
(float32 weights) and ``model_fp16.onnx`` (half weights, float32 arithmetic)
of the same folded network, input "input" in NCHW (``pip install -e
".[export]"``).
"""

from absl import app, flags

import launch
from jnas import arch as arch_lib
from jnas import export, precision, results

_WORKDIR = flags.DEFINE_string("workdir", None, "A search's workdir.")
_CANDIDATE = flags.DEFINE_string("candidate", None, "A record's hash (or prefix).")
_OUT = flags.DEFINE_string("out", None, "Folder for the C project.")
_FORMAT = flags.DEFINE_string(
    "format", "custom", "custom | half | float32 | eEmM (e.g. e4m3)."
)
_ONNX = flags.DEFINE_bool(
    "onnx", False, "Also write model.onnx (float32) and model_fp16.onnx (needs onnx)."
)
flags.mark_flags_as_required(["workdir", "candidate", "out"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    records = results.load(launch.workdir(_WORKDIR.value))
    found = [r for r in records if r["hash"].startswith(_CANDIDATE.value)]
    if len(found) != 1:
        names = ", ".join(
            f"{r['hash'][:12]} ({results.model_name(r)})" for r in records[:8]
        )
        launch.fail(
            f"--candidate={_CANDIDATE.value!r} matches {len(found)} of the "
            f"{len(records)} records of {_WORKDIR.value}; give a unique hash prefix"
            + (f", e.g. {names}" if records else "")
        )
    record = found[0]
    text = _FORMAT.value
    if text == "custom":
        text = record.get("custom_format") or "float32"
    try:
        fmt = precision.FloatFormat.parse(text)
    except ValueError as e:
        launch.fail(
            f"--format={_FORMAT.value!r}: {e}; allowed: custom, half, float32, eEmM"
        )
    if record.get("release") is not None:
        launch.fail(
            f"{results.model_name(record)} is a replay record (the release's "
            "accuracy, no trained weights): export needs a candidate trained by "
            "jnas; train it with --config.search.candidates="
            f"\"('{record['space']}:{record['law']}:{record['index']}',)\" "
            "(experiments/reproduce.py) and export from that workdir"
        )
    try:
        variables = results.load_checkpoint(_WORKDIR.value, record["hash"])
    except results.CheckpointError as e:
        launch.fail(str(e))
    arch = arch_lib.from_dict(record["arch"])
    manifest = export.export_c(arch, variables, fmt, _OUT.value)
    if _ONNX.value:
        from jnas.export import onnx_model

        try:
            for dtype, name in (
                ("float32", "model.onnx"),
                ("float16", "model_fp16.onnx"),
            ):
                half = precision.HALF if dtype == "float16" else None
                folded = export.inference_model(arch, variables, half)
                onnx_model.save(folded, f"{_OUT.value}/{name}", dtype)
        except ImportError as e:
            launch.fail(str(e))
    print(
        f"{results.model_name(record)} in {manifest['format']}: weights "
        f"{manifest['weight_bytes']} B, arena {manifest['arena_bytes']} B; "
        f"C project in {_OUT.value} (build: {manifest['build']})"
    )


if __name__ == "__main__":
    app.run(main)
