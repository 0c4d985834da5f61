"""Are network latencies on this machine sums of their convolutions' latencies?

Times every convolution of the measured networks of one space ON ITS OWN (a
jitted single XLA conv with the same shapes, pinned like the calibration) and
fits, by 5-fold cross-validation over networks,

    network ms ~ a * (sum of its convs' own ms) + b * (number of convs) + c

(b absorbs the per-call dispatch a separately timed conv pays and the network
does not). If this puts nearly every network within 10%, the per-node model's
misses come from predicting each conv's time from its shape, not from the
network being more than the sum of its parts: the case for kernel-level
calibration (time the calibration networks' kernels, fit a per-shape model).

Run (after a calibration run, e.g. ``benchmarks/latency_local.py --seed 3``):
    .venv/bin/python benchmarks/latency_additivity.py --workdir /tmp/ll3
Numbers in docs/results.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from jnas import latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--space", default="probenet_s")
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    # Same conditions as the calibration: one pinned XLA thread, Eigen convs.
    latency.pin_threads(None, ["--xla_cpu_experimental_ynn_fusion_type="])

    import jax
    import numpy as np

    entries = [
        e
        for name in ("calibration.jsonl", "evaluation.jsonl")
        for e in latency.read_calibration(args.workdir / name, statistic="min_ms")
        if e.source["space"] == args.space
    ]
    if len(entries) < 10:
        raise SystemExit(
            f"{args.workdir}: only {len(entries)} {args.space} networks; "
            "run benchmarks/latency_local.py first"
        )
    own: dict[tuple, float] = {}

    def conv_ms(key: tuple) -> float:
        if key not in own:
            c_in, c_out, kh, kw, h, w, pad, stride, groups = key
            rng = np.random.default_rng(0)
            x = rng.standard_normal((1, h, w, c_in), np.float32)
            k = rng.standard_normal((kh, kw, c_in // groups, c_out), np.float32)
            f = jax.jit(
                lambda x, k: jax.lax.conv_general_dilated(
                    x,
                    k,
                    stride,
                    (pad[:2], pad[2:]),
                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                    feature_group_count=groups,
                )
            )
            x, k = jax.device_put(x), jax.device_put(k)
            call = f.lower(x, k).compile()
            for _ in range(5):
                call(x, k).block_until_ready()
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                call(x, k).block_until_ready()
                times.append(time.perf_counter() - t0)
            own[key] = min(times) * 1e3
        return own[key]

    start = time.perf_counter()
    rows = []
    for e in entries:
        arch, shapes, total, count = e.arch, e.arch.shapes, 0.0, 0
        for node in arch.nodes:
            if node.op != "conv":
                continue
            kh, kw = node.attr("kernel")
            ph, pw = node.attr("padding")
            h, w, c_in = shapes[node.inputs[0]]
            key = (
                c_in,
                shapes[node.name][-1],
                kh,
                kw,
                h,
                w,
                (ph, ph, pw, pw),
                tuple(node.attr("stride")),
                arch.groups(node),
            )
            total += conv_ms(key)
            count += 1
        rows.append((e.latency_ms, total, count))
    y, convs, count = (np.array(c, float) for c in zip(*rows, strict=True))
    x = np.c_[convs, count, np.ones_like(y)] / y[:, None]  # relative error
    pred = np.zeros_like(y)
    order = np.random.default_rng(0).permutation(len(y))
    for fold in range(5):
        test = order[fold::5]
        train = np.setdiff1d(order, test)
        coef = np.linalg.lstsq(x[train], np.ones(len(train)), rcond=None)[0]
        pred[test] = x[test] * y[test, None] @ coef
    err = np.abs(pred / y - 1)
    print(
        f"{args.space}: {len(y)} networks, {len(own)} distinct convs timed alone "
        f"({time.perf_counter() - start:.0f} s); their sum is a median "
        f"{np.median(convs / y) * 100:.0f}% of the network's time"
    )
    print(
        f"network ~ a*sum(conv alone) + b*convs + c, 5-fold CV: within 10% "
        f"{np.mean(err <= 0.1) * 100:.1f}%, within 5% {np.mean(err <= 0.05) * 100:.1f}%"
        f", median error {np.median(err) * 100:.2f}%"
    )


if __name__ == "__main__":
    main()
