"""One core, one network at a time: jnas's step against PyTorch's, per candidate.

    taskset -c 0 python benchmarks/per_core.py --space mobilenetv2 --law s6 \
        --candidates 8 --batch 128
    taskset -c 0 python benchmarks/per_core.py --space mobilenetv2 --law s6 \
        --indices 0,4,7 --batch 32 --side jnas \
        --xla-option xla_cpu_experimental_ynn_fusion_type=

Where `benchmarks/vs_pytorch.py` measures whole layouts (processes, buckets,
compiles), this isolates the kernel question behind its ratio: on one pinned
core, how long does one training step of one candidate take in jnas (a
singleton bucket, the engine's own step program: forward, backward, SGD with
momentum and weight decay) and in a plain PyTorch loop (the same network from
`torch_ir`, channels_last, one thread, `torch.optim.SGD`)? Each side: best of
3 windows of 5 steps after 3 warm-up steps (jnas: after the compile, which is
printed). Same random batch on both sides.

`--xla-option KEY=VALUE` (repeatable) compiles jnas's step program with XLA
debug options (`jax.jit(..., compiler_options=...)`), one program at a time,
for trying XLA:CPU settings per program rather than per process.

Both sides run in this process one after the other (PyTorch first, so JAX's
thread pools do not exist yet while it runs); pin the process with taskset.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _best(step, windows: int = 3, steps: int = 5, warmup: int = 3, sync=None):
    """Seconds per step: best of `windows` windows of `steps` after `warmup`."""
    for _ in range(warmup):
        out = step()
    if sync:
        sync(out)
    best = float("inf")
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(steps):
            out = step()
        if sync:
            sync(out)
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def torch_steps(archs, x, y) -> list[float]:
    """Per candidate: seconds per PyTorch SGD step, one thread, channels_last."""
    import torch
    import torch_ir

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    fmt = torch.channels_last
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
    yt = torch.from_numpy(y).long()
    out = []
    for a in archs:
        model = torch_ir.build(a).to(memory_format=fmt)
        model.train()
        opt = torch.optim.SGD(
            model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4
        )

        def step(model=model, opt=opt):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(xt), yt)
            loss.backward()
            opt.step()
            return loss

        out.append(_best(step))
    return out


def jnas_steps(archs, x, y, conv_impl: str, options: dict) -> list[tuple[float, float]]:
    """Per candidate: (compile seconds, seconds per step) of a singleton bucket."""
    import jax

    from jnas import population
    from jnas.population import engine
    from jnas.population import step as train

    recipe = engine.Recipe(
        tx=train.make_optimizer(), schedule=train.make_schedule("cosine", 300)
    )
    xj, yj = jax.device_put(x), jax.device_put(y.astype(np.int32))
    out = []
    for i, a in enumerate(archs):
        bucket = population.make_bucket([a])
        trainer = engine.BucketTrainer(
            bucket,
            recipe,
            keys=[jax.random.key(i)],
            lrs=[0.01],
            strategy="vmap",
            conv_impl=conv_impl,
        )
        if options:  # the same step program, compiled with the given options
            counted = trainer._steps[0]
            counted._jitted = jax.jit(
                counted._jitted.__wrapped__,
                donate_argnums=0,
                compiler_options=options,
            )
        t0 = time.perf_counter()
        jax.block_until_ready(trainer.step(xj, yj))
        compile_s = time.perf_counter() - t0
        out.append(
            (
                compile_s,
                _best(lambda t=trainer: t.step(xj, yj), sync=jax.block_until_ready),
            )
        )
        engine.clear_caches()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", required=True)
    parser.add_argument("--law", required=True)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--indices", help="comma-separated sample indices")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--side", default="both", choices=("both", "jnas", "torch"))
    parser.add_argument("--conv-impl", default="im2col", help="im2col | xla")
    parser.add_argument(
        "--xla-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="XLA debug option for jnas's step program (repeatable)",
    )
    args = parser.parse_args()
    options = {}
    for item in args.xla_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--xla-option {item!r} is not KEY=VALUE")
        options[key] = value

    import vs_pytorch

    archs = vs_pytorch.candidates(args.space, args.law, args.candidates, args.indices)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, *archs[0].input_shape)).astype(np.float32)
    y = rng.integers(0, archs[0].num_classes, args.batch)
    torch_s = torch_steps(archs, x, y) if args.side != "jnas" else None
    jnas_s = (
        jnas_steps(archs, x, y, args.conv_impl, options)
        if args.side != "torch"
        else None
    )
    print(
        f"{args.space} {args.law}, batch {args.batch}, one core "
        f"(affinity {sorted(os.sched_getaffinity(0))}), xla options {options or '-'}"
    )
    print(
        f"{'index':>10} {'jnas compile s':>14} {'jnas ms':>8} {'torch ms':>8} {'ratio':>6}"
    )
    for k, a in enumerate(archs):
        c, j = jnas_s[k] if jnas_s else (float("nan"), float("nan"))
        t = torch_s[k] if torch_s else float("nan")
        print(
            f"{dict(a.meta)['index']:>10} {c:>14.1f} {1e3 * j:>8.1f} {1e3 * t:>8.1f} {t / j:>6.2f}"
        )
    if jnas_s and torch_s:
        tj = sum(j for _, j in jnas_s)
        tt = sum(torch_s)
        print(
            f"{'sum':>10} {'':>14} {1e3 * tj:>8.1f} {1e3 * tt:>8.1f} {tt / tj:>6.2f}"
            "  (ratio: torch time / jnas time; > 1 means jnas is faster)"
        )


if __name__ == "__main__":
    main()
