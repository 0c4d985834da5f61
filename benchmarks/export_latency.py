"""Latency of exported C models on this machine, next to the latency predictor.

    python benchmarks/export_latency.py --predictor=runs/calib/predictor.json \
        [--networks 6] [--core 1] [--images 200]

For sampled networks of the quickstart's laws (ResNeXt s3, MobileNetV2 s6,
PNASNet s3; weights as initialised: latency does not depend on the values),
exports each in float32 and in e4m3 (`jnas.export.export_c`), builds it with
the system C compiler (-O2), and times ``./model --time`` (median ms per image
over ``--images`` images, pinned to one core). Printed next to: this
machine's latency predictor (``launch.calibrate``'s ``predictor.json``; it
models jnas's XLA batch-1 program, which is also timed here, same core, same
run) and the shipped Raspberry Pi 3B+ predictor.
"""

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from jnas import export, latency, nn, precision
from jnas.search import sampling

LAWS = (("resnext", "s3"), ("mobilenetv2", "s6"), ("pnasnet", "s3"))


def _c_ms(arch, variables, fmt, images, core):
    out = Path(tempfile.mkdtemp())
    export.export_c(arch, variables, fmt, out)
    subprocess.run(
        [
            "cc",
            "-std=c99",
            "-O2",
            '-DJNAS_MODEL="model.h"',
            "jnas_runtime.c",
            "main.c",
            "-o",
            "model",
            "-lm",
        ],  # fmt: skip
        cwd=out,
        check=True,
    )
    images.tofile(out / "images.f32")
    cmd = ["taskset", "-c", str(core), str(out / "model"), "--time",
           str(out / "images.f32"), str(len(images))]  # fmt: skip
    return float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def _xla_ms(arch, variables, images):
    model = nn.create_model(arch)
    fn = jax.jit(lambda v, x: nn.apply(model, v, x))
    x = images[:1]
    jax.block_until_ready(fn(variables, x))
    times = []
    for i in range(min(len(images), 100)):
        start = time.perf_counter()
        jax.block_until_ready(fn(variables, images[i : i + 1]))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictor", required=True, help="launch.calibrate output")
    parser.add_argument("--networks", type=int, default=6)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--core", type=int, default=1)
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.core})
    local = latency.load(args.predictor)
    pi = latency.raspi3b_predictor()
    archs = sampling.sample_round(list(LAWS), args.networks, seed=0, round_index=0)
    images = np.random.default_rng(0).normal(size=(args.images, 32, 32, 3))
    images = images.astype(np.float32)
    print(
        "| network | params | C float32 ms | C e4m3 ms | jnas XLA ms | "
        "predictor (this machine) ms | Pi predictor ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for arch in archs:
        meta = dict(arch.meta)
        variables = jax.tree.map(
            np.asarray, nn.init(nn.create_model(arch), jax.random.key(0))
        )
        c32 = _c_ms(arch, variables, None, images, args.core)
        c8 = _c_ms(arch, variables, precision.as_format("e4m3"), images, args.core)
        xla = _xla_ms(arch, variables, images)
        params = sum(int(np.size(v)) for v in jax.tree.leaves(variables["params"]))
        print(
            f"| {meta['space']}:{meta['law']}:{meta['index']} | {params} | "
            f"{c32:.3f} | {c8:.3f} | {xla:.3f} | {local.predict(arch):.3f} | "
            f"{pi.predict(arch):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
