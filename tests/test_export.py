"""Issue 18, part 2: a found network exported as bit-packed C99 and checked."""

import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from conftest import REPO

from jnas import cost, data, export, nn, precision, spaces
from jnas.export import fold, pack, plan

CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (apt install gcc)")


def _forward(arch, variables, images):
    """jnas's forward pass, compiled once (eager op-by-op is slow here)."""
    model = nn.create_model(arch)
    return np.asarray(jax.jit(lambda v, x: nn.apply(model, v, x))(variables, images))


def _trained_like(arch, seed=1):
    """Initial variables with BatchNorm statistics and affines made non-trivial."""
    rng = np.random.default_rng(seed)
    v = jax.tree.map(np.asarray, nn.init(nn.create_model(arch), jax.random.key(seed)))
    for name, s in v["batch_stats"].items():
        s["mean"] = (0.1 * rng.normal(size=s["mean"].shape)).astype(np.float32)
        s["var"] = rng.uniform(0.5, 2.0, s["var"].shape).astype(np.float32)
        p = v["params"][name]
        p["scale"] = rng.uniform(0.5, 1.5, p["scale"].shape).astype(np.float32)
        p["bias"] = (0.1 * rng.normal(size=p["bias"].shape)).astype(np.float32)
    return v


@pytest.mark.parametrize(
    "fmt,dtype",
    [
        ("e5m10", np.float16),
        ("e8m7", ml_dtypes.bfloat16),
        ("e4m3", ml_dtypes.float8_e4m3),
        ("e5m2", ml_dtypes.float8_e5m2),
    ],
)
def test_codes_are_the_ieee_bit_patterns_and_pack_to_storage_bytes(fmt, dtype):
    # Oracle: ml_dtypes' own encodings of the IEEE-style formats.
    rng = np.random.default_rng(0)
    x = (rng.normal(size=5001) * np.exp(4 * rng.normal(size=5001))).astype(np.float32)
    x[:4] = [0.0, -0.0, np.inf, -np.inf]
    q = np.asarray(precision.quantize(jnp.asarray(x), precision.as_format(fmt)))
    codes = pack.encode(q, fmt)
    width = np.dtype(dtype).itemsize
    want = q.astype(dtype).view({1: np.uint8, 2: np.uint16}[width]).astype(np.uint32)
    np.testing.assert_array_equal(codes, want)
    np.testing.assert_array_equal(
        pack.decode(codes, fmt).view(np.uint32), q.view(np.uint32)
    )
    bits = precision.as_format(fmt).bits
    blob = pack.pack(codes, bits)
    assert len(blob) == precision.storage_bytes(x.size, fmt)
    np.testing.assert_array_equal(pack.unpack(blob, x.size, bits), codes)


def test_unrounded_values_are_refused():
    with pytest.raises(ValueError, match=r"value 0.1.* not representable in e4m3"):
        pack.encode(np.array([1.0, 0.1], np.float32), "e4m3")


@pytest.mark.parametrize(
    "space,law,index",
    [
        ("mobilenetv2", "s6", 27),
        ("densenet", "s3", 0),  # BatchNorms after concats stay affines
        ("resnext", "s3", 1),
        ("pnasnet", "s3", 0),
        ("googlenet", "s6", 0),
    ],
)
def test_folding_keeps_the_function_and_stores_cost_weights(space, law, index):
    arch = spaces.sample(space, law, index)
    variables = _trained_like(arch)
    folded = fold.fold(arch, variables)
    stored = sum(v.size for _, _, v in fold.stored_values(folded))
    assert stored == cost.weights(arch)
    assert (len(folded.affine) > 0) == (space == "densenet")
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 32, 32, 3)), jnp.float32)
    want = _forward(arch, variables, x)
    got = _forward(folded.arch, folded.variables, x)
    np.testing.assert_allclose(
        got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max())
    )
    offsets, arena = plan.plan(folded.arch)
    assert 4 * arena == cost.peak_activation_bytes(folded.arch, precision.FLOAT32)
    # No two tensors live at the same step overlap in the arena.
    spans, sizes = (
        plan.lifetimes(folded.arch),
        {n: int(np.prod(s)) for n, s in folded.arch.shapes.items()},
    )
    names = list(sizes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if spans[a][0] <= spans[b][1] and spans[b][0] <= spans[a][1]:
                assert (
                    offsets[a] + sizes[a] <= offsets[b]
                    or offsets[b] + sizes[b] <= offsets[a]
                ), (a, b)


def _build(out):
    cmd = [CC, "-std=c99", "-O2", "-Wall", "-Werror", '-DJNAS_MODEL="model.h"',
           "jnas_runtime.c", "main.c", "-o", "model", "-lm"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out / "model"


def _run(binary, images):
    path = binary.parent / "images.f32"
    np.ascontiguousarray(images, np.float32).tofile(path)
    proc = subprocess.run([binary, path, str(len(images))], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    return np.frombuffer(proc.stdout, np.float32).reshape(len(images), -1)


@needs_cc
@pytest.mark.parametrize(
    "space,law,index,fmt",
    [
        ("densenet", "s3", 0, "e5m10"),
        ("resnext", "s3", 1, "e3m4"),
        ("pnasnet", "s3", 0, None),
    ],
)
def test_c_runtime_matches_jnas_on_every_family_op(tmp_path, space, law, index, fmt):
    arch = spaces.sample(space, law, index)
    variables = _trained_like(arch)
    manifest = export.export_c(arch, variables, fmt, tmp_path)
    fmt = precision.FLOAT32 if fmt is None else precision.as_format(fmt)
    assert manifest["weight_bytes"] == cost.memory_bytes(arch, fmt, "folded")
    assert manifest["arena_bytes"] == manifest["peak_activation_bytes"]
    images = np.random.default_rng(3).normal(size=(16, 32, 32, 3)).astype(np.float32)
    got = _run(_build(tmp_path), images)
    model = export.inference_model(arch, variables, fmt)
    want = _forward(model.arch, model.variables, images)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@needs_cc
def test_export_command_on_a_trained_candidate_agrees_on_1000_images(
    reference_search, tmp_path
):
    record = max(
        reference_search.records.values(),
        key=lambda r: r["accuracy"]["float32"]["val"],
    )
    out = tmp_path / "export"
    cmd = [sys.executable, "-m", "launch.export",
           f"--workdir={reference_search.workdir}",
           f"--candidate={record['hash'][:10]}", f"--out={out}"]  # fmt: skip
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    fmt = precision.as_format(record["custom_format"])
    assert manifest["format"] == str(fmt)
    from jnas import arch as arch_lib
    from jnas import results

    arch = arch_lib.from_dict(record["arch"])
    assert manifest["weight_bytes"] == cost.memory_bytes(arch, fmt, "folded")
    # 1,000 real images: the bundled digits, as the search fed them.
    x, _, meta = data.load("digits", "train", image_shape=(32, 32, 3), fit="resize")
    images = (x[:1000].astype(np.float32) / 255 - np.float32(meta.mean)) / np.float32(
        meta.std
    )
    got = _run(_build(out), images)
    variables = results.load_checkpoint(reference_search.workdir, record["hash"])
    model = export.inference_model(arch, variables, fmt)
    want = _forward(model.arch, model.variables, images)
    assert np.array_equal(got.argmax(1), want.argmax(1))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_export_command_names_a_bad_candidate():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.export",
            "--workdir=/nonexistent",
            "--candidate=abc",
            "--out=/tmp/x",
        ],  # fmt: skip
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "--candidate='abc' matches 0 of the 0 records" in proc.stderr


@pytest.mark.parametrize(
    "space,law,index", [("densenet", "s3", 0), ("googlenet", "s6", 0)]
)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_onnx_model_matches_jnas_in_onnxruntime(tmp_path, space, law, index, dtype):
    ort = pytest.importorskip("onnxruntime", reason="pip install -e '.[test]'")
    from jnas.export import onnx_model

    arch = spaces.sample(space, law, index)
    variables = _trained_like(arch)
    fmt = precision.HALF if dtype == "float16" else None
    model = export.inference_model(arch, variables, fmt)
    path = onnx_model.save(model, tmp_path / "m.onnx", dtype)
    images = np.random.default_rng(4).normal(size=(16, 32, 32, 3)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": np.transpose(images, (0, 3, 1, 2))})
    want = _forward(model.arch, model.variables, images)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert np.array_equal(got.argmax(1), want.argmax(1))
    with pytest.raises(ValueError, match="dtype='int8' is not one of float32, float16"):
        onnx_model.build(model, "int8")
