"""jnas's population engine against the PyTorch loop a user would otherwise run.

    python benchmarks/vs_pytorch.py --space mobilenetv2 --law s6 --candidates 8 \\
        --batch 128 --steps 200 --repeats 2 [--select first|shared] \\
        [--indices 27,39,...] [--data random|cifar10|... --data-dir PATH] \\
        [--layouts loop,procs] [--formats contiguous,channels_last] [--json OUT]

Needs PyTorch, the benchmark-only extra: pip install -e '.[bench]' (a CPU
wheel; never a jnas dependency). Run from the repository root.

The same networks (the first `--candidates` indices of a law that build; with
`--select shared` the first ones of one bucket key, i.e. equal up to widths, the
case the engine is built for: the first 8 of mobilenetv2 s6 make 7 buckets, so
7 programs; or `--indices`) are trained for `--steps` SGD steps (lr 0.05, momentum 0.9,
coupled weight decay 5e-4, cross-entropy, constant learning rate) on the same
batches (a fixed pool of `--pool` batches, cycled; seeded random normal images
and random labels by default) by:

- jnas: the population engine as the search runs it (jnas/search/loop.py):
  `population.plan` into buckets, per bucket `engine.choose_plan` (the rule,
  conv lowering "auto"), `engine.BucketTrainer`, `trainer.step` for every step
  without blocking, then `engine.clear_caches()` (the search frees each
  bucket's programs). Every repeat starts from cleared caches, so each pays
  its compiles (no persistent compilation cache unless `--cache`).
- PyTorch, a plain eager loop (`benchmarks/torch_ir.py` builds each network
  from the same IR): per step, for each model: forward, loss, backward,
  `opt.step()` (torch.optim.SGD, same hyper-parameters). Two layouts, each in
  fresh spawned processes: "loop" (one process, `torch.set_num_threads(ncpu)`)
  and "procs" (one process per core, one thread each, the models dealt out
  balanced by MACs), each in contiguous NCHW and channels_last memory format.
  The best PyTorch row counts.

Timing. Library imports and data preparation are outside the clock on both
sides (the PyTorch workers import torch and load the batches, then wait on a
barrier). "wall" is everything for `--steps` steps: jnas's planning, state
initialisation (`BucketTrainer`), compiles and steps; PyTorch's model and
optimiser construction and steps. "first" is the first step of every bucket
(jnas: the step program's compile) or of every model (PyTorch: oneDNN's
warm-up). "steady" is candidates x batch x (steps - 1) over the time of the
remaining steps: candidate-images per second once running. The sides alternate
(A B A B) for `--repeats` rounds; the table shows the median over rounds.

Sanity: "loss" is the mean over candidates of the last step's training loss;
the two sides start from different random weights (each library's own init,
the same distribution), so losses agree only roughly. Exact agreement given
the same weights is tests/test_torch_ir.py's job.

This module imports no JAX at top level: spawned PyTorch workers re-import it.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "benchmarks"):  # jnas (uninstalled) and torch_ir
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

BARRIER_TIMEOUT = 600  # seconds for the workers to import torch and load data


# ----------------------------------------------------------------- inputs


def candidates(space: str, law: str, count: int, indices: str | None, select="first"):
    """The archs: `indices` (comma-separated), else `count` samples that build.

    select: "first" takes the first `count` indices; "shared" the first
    `count` indices of one bucket key (`population.bucket_key`: equal up to
    widths, so they can share one program), the key that gathers `count`
    members at the lowest index.
    """
    from jnas import spaces
    from jnas.population import buckets

    if indices:
        return [spaces.sample(space, law, int(i)) for i in indices.split(",")]
    groups: dict[str, list] = {}
    for index in range(100 * count + 10_000):
        try:
            a = spaces.sample(space, law, index)
        except ValueError:  # e.g. a DenseNet transition that floors to 0
            continue
        key = "all" if select == "first" else buckets.bucket_key(a)
        groups.setdefault(key, []).append(a)
        if len(groups[key]) == count:
            return groups[key]
    raise ValueError(f"no {count} {select!r} {space} {law} samples found")


def make_batches(args, input_shape, num_classes):
    """The pool of (images NHWC float32, labels int32) both sides cycle through."""
    count, batch = min(args.pool, args.steps), args.batch
    if args.data == "random":
        rng = np.random.default_rng(args.seed)
        shape = (count, batch, *input_shape)
        images = rng.standard_normal(shape, dtype=np.float32)
        labels = rng.integers(0, num_classes, (count, batch), dtype=np.int32)
        return images, labels
    from jnas import data

    kwargs = {"image_shape": tuple(input_shape)}
    if args.data_dir:
        kwargs["data_dir"] = args.data_dir
    x, y, meta = data.load(args.data, "train", **kwargs)
    need = count * batch
    if len(x) < need:
        raise ValueError(f"{args.data} has {len(x)} train images; need {need}")
    order = np.random.default_rng(args.seed).permutation(len(x))[:need]
    x = x[order].astype(np.float32) / 255.0
    x = (x - np.asarray(meta.mean, np.float32)) / np.asarray(meta.std, np.float32)
    if int(y.max()) >= num_classes:
        raise ValueError(f"{args.data} has labels >= num_classes={num_classes}")
    return (
        x.reshape(count, batch, *input_shape).astype(np.float32),
        y[order].reshape(count, batch).astype(np.int32),
    )


# ----------------------------------------------------------------- jnas


def run_jnas(archs, args, pool, queue=None, barrier=None):
    """One jnas run; returns its timings (seconds) and bucket summary.

    `queue`: a store shared with the other workers (`_SharedStore`); the
    worker takes the plan's buckets from it as the search's processes do
    (`distributed.take`, longest first). None: every bucket, in plan order.
    `barrier`: waited on once everything is imported and the batches are on
    the device (the workers of the "procs" layout start their clocks together).
    """
    import jax

    from jnas import distributed
    from jnas.population import engine
    from jnas.population import step as train
    from jnas.search import loop

    engine.clear_caches()  # every repeat pays its compiles
    jax.block_until_ready(jax.jit(lambda x: x + 1)(np.float32(0)))  # backend up
    images = [jax.device_put(x) for x in pool[0]]
    labels = [jax.device_put(y) for y in pool[1]]
    jax.block_until_ready((images, labels))
    recipe = engine.Recipe(
        tx=train.make_optimizer(momentum=args.momentum, weight_decay=args.weight_decay),
        schedule=train.make_schedule("constant", args.steps),
    )
    n_pool = len(images)
    build = first = steady = 0.0
    losses, buckets, traces = [], [], 0
    if barrier is not None:
        barrier.wait(BARRIER_TIMEOUT)
    t_start = time.monotonic()
    start = time.perf_counter()
    plan = _jnas_plan(archs, args)
    if queue is None:
        todo = range(len(plan))
    else:
        cfg = argparse.Namespace(
            train=argparse.Namespace(steps=args.steps, batch_size=args.batch)
        )
        order = distributed.longest_first([loop._bucket_cost(cfg, b) for b, _ in plan])
        todo = distributed.take(order, "buckets", client=queue)
    for b in todo:
        bucket, indices = plan[b]
        t0 = time.perf_counter()
        strategy, impl = engine.choose_plan(
            bucket,
            recipe,
            choice=args.choice,
            conv_impl=args.conv_impl,
            batch_size=args.batch,
            input_shape=tuple(bucket.padded.input_shape),
        )
        trainer = engine.BucketTrainer(
            bucket,
            recipe,
            keys=[jax.random.key(args.seed + i) for i in indices],
            lrs=[args.lr] * bucket.size,
            strategy=strategy,
            conv_impl=impl,
        )
        t1 = time.perf_counter()
        metrics = trainer.step(images[0], labels[0])
        jax.block_until_ready(metrics)
        t2 = time.perf_counter()
        for s in range(1, args.steps):  # dispatched without blocking, as the search
            metrics = trainer.step(images[s % n_pool], labels[s % n_pool])
        jax.block_until_ready(metrics)
        t3 = time.perf_counter()
        build, first, steady = build + t1 - t0, first + t2 - t1, steady + t3 - t2
        losses.extend(np.asarray(metrics["loss"])[: bucket.size].tolist())
        traces += trainer.traces
        buckets.append(f"{bucket.size}:{strategy}/{impl}")
        del trainer
        engine.clear_caches()  # as the search: a bucket's programs are not reused
    wall = time.perf_counter() - start
    return {
        "wall": wall,
        "build": build,
        "first": first,
        "steady": steady,
        "loss": float(np.mean(losses)) if losses else float("nan"),
        "losses": losses,
        "buckets": buckets,
        "compiles": traces,
        "t": (t_start, t_start + wall),
    }


def _jnas_plan(archs, args):
    from jnas import population
    from jnas.population import engine

    return population.plan(
        archs,
        max_waste=args.max_waste,
        max_size=args.max_bucket or None,
        memory_budget=engine.device_memory_budget(),
        batch_size=args.batch,
    )


class _SharedStore:
    """`distributed.take`'s client over a multiprocessing dict: the same queue
    as the search's (there, keys in JAX's coordination service)."""

    def __init__(self, values, lock, rank):
        self.values, self.lock, self.process_index = values, lock, rank

    def key_value_increment(self, key, by):
        with self.lock:
            self.values[key] = self.values.get(key, 0) + by
            return self.values[key]

    def key_value_set(self, key, value, allow_overwrite=False):
        with self.lock:
            if key in self.values and not allow_overwrite:
                raise KeyError(f"key {key} already exists")
            self.values[key] = value

    def key_value_dir_get(self, prefix):
        if prefix == "jnas/alive/":  # the benchmark's workers do not die
            return [(f"{prefix}{r}", str(time.monotonic())) for r in range(64)]
        with self.lock:
            return [(k, str(v)) for k, v in self.values.items() if k.startswith(prefix)]


def jnas_worker(rank, jobs, store, args, pool_path, barrier, queue):
    """A jnas worker of the "procs" layout: pinned to core `rank`, it takes
    buckets from the shared queue, as `launch.search`'s local workers do."""
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[rank]})
        from jnas import arch as arch_lib

        archs = [arch_lib.Arch.from_json(j) for j in jobs]
        with np.load(pool_path) as pool:
            batches = (pool["images"], pool["labels"])
        result = run_jnas(
            archs, args, batches, queue=_SharedStore(*store, rank), barrier=barrier
        )
        queue.put({"rank": rank, **result})
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        barrier.abort()
        queue.put({"rank": rank, "error": f"{type(err).__name__}: {err}"})
        raise


def run_jnas_procs(archs, args, pool_path, workers):
    """jnas as the main job runs on a CPU: one pinned process per core, each
    taking the plan's buckets from one queue (`distributed.take`)."""
    ctx = mp.get_context("spawn")
    ranks = range(min(workers, len(_jnas_plan(archs, args))))
    manager = ctx.Manager()
    store = (manager.dict(), manager.Lock())
    barrier = ctx.Barrier(len(ranks) + 1)
    queue = ctx.Queue()
    jobs = [a.to_json() for a in archs]
    procs = [
        ctx.Process(
            target=jnas_worker,
            args=(
                r,
                jobs,
                store,
                args,
                pool_path,
                barrier,
                queue,
            ),
            daemon=True,
        )
        for r in ranks
    ]
    results = _run_workers(procs, barrier, queue, "jnas")
    t = np.array([r["t"] for r in results])
    return {
        "wall": t[:, 1].max() - t[:, 0].min(),
        "build": max(r["build"] for r in results),
        "first": max(r["first"] for r in results),
        "steady": max(r["steady"] for r in results),
        "loss": float(np.mean([v for r in results for v in r["losses"]])),
        "buckets": [b for r in results for b in r["buckets"]],
        "compiles": sum(r["compiles"] for r in results),
    }


def _torch_warmup(torch, loss_fn):
    """One step of a throwaway net: PyTorch's lazy imports (torch.fx code
    generation, the optimiser's torch._dynamo hooks; ~2 s) happen once per
    process, so they stay out of the clock like `import torch` itself."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(144, 10)
    )
    net = torch.fx.symbolic_trace(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss_fn(net(torch.zeros(2, 3, 8, 8)), torch.zeros(2, dtype=torch.long)).backward()
    opt.step()


def torch_worker(rank, jobs, args, threads, channels_last, pool_path, barrier, queue):
    """Trains `jobs` (arch JSON strings) one after another per step; reports times."""
    try:
        import torch
        import torch_ir

        from jnas import arch as arch_lib

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        torch.manual_seed(args["seed"] + rank)
        archs = [arch_lib.Arch.from_json(j) for j in jobs]
        with np.load(pool_path) as pool:
            images = torch.from_numpy(pool["images"]).permute(0, 1, 4, 2, 3)  # NCHW
            labels = torch.from_numpy(pool["labels"]).long()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        batches = [
            (images[i].contiguous(memory_format=fmt), labels[i])
            for i in range(images.shape[0])
        ]
        loss_fn = torch.nn.functional.cross_entropy
        _torch_warmup(torch, loss_fn)
        barrier.wait(BARRIER_TIMEOUT)
        t0 = time.monotonic()
        models = []
        for a in archs:
            model = torch_ir.build(a).to(memory_format=fmt)
            model.train()
            opt = torch.optim.SGD(
                model.parameters(),
                lr=args["lr"],
                momentum=args["momentum"],
                weight_decay=args["weight_decay"],
            )
            models.append((model, opt))
        t1 = time.monotonic()
        t2, losses = None, []
        for s in range(args["steps"]):
            x, y = batches[s % len(batches)]
            losses = []
            for model, opt in models:
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()
                losses.append(loss.detach())
            if s == 0:
                t2 = time.monotonic()
        t3 = time.monotonic()
        queue.put(
            {
                "rank": rank,
                "t": (t0, t1, t2, t3),
                "losses": [float(v) for v in losses],
                "torch": torch.__version__,
                "mkldnn": torch.backends.mkldnn.is_available(),
            }
        )
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        barrier.abort()
        queue.put({"rank": rank, "error": f"{type(err).__name__}: {err}"})
        raise


def _deal(archs, workers):
    """Splits the models over workers: by MACs, snake order (equal counts)."""
    from jnas import cost

    order = sorted(range(len(archs)), key=lambda i: -cost.macs(archs[i]))
    shares = [[] for _ in range(workers)]
    for k, i in enumerate(order):
        lap, pos = divmod(k, workers)
        shares[pos if lap % 2 == 0 else workers - 1 - pos].append(i)
    return [s for s in shares if s]


def _collect(queue, procs):
    """One report per worker; raises if a worker dies without reporting."""
    import queue as queue_lib

    results = []
    while len(results) < len(procs):
        try:
            results.append(queue.get(timeout=5))
        except queue_lib.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead and queue.empty():
                raise RuntimeError(
                    f"a PyTorch worker died (exit code {dead[0]})"
                ) from None
    for p in procs:
        p.join()
    return results


def _run_workers(procs, barrier, queue, side: str):
    """Starts the workers, releases them together, returns their reports."""
    for p in procs:
        p.start()
    try:
        barrier.wait(BARRIER_TIMEOUT)
    except Exception:  # noqa: BLE001 - a worker failed before the start
        pass
    results = _collect(queue, procs)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(f"{side} worker failed: {errors[0]}")
    return results


def run_torch(archs, args, pool_path, workers, threads, channels_last):
    """One PyTorch run in `workers` fresh processes of `threads` threads each."""
    ctx = mp.get_context("spawn")
    shares = _deal(archs, workers)
    barrier = ctx.Barrier(len(shares) + 1)
    queue = ctx.Queue()
    settings = {
        k: getattr(args, k) for k in ("seed", "lr", "momentum", "weight_decay", "steps")
    }
    procs = []
    for rank, share in enumerate(shares):
        jobs = [archs[i].to_json() for i in share]
        procs.append(
            ctx.Process(
                target=torch_worker,
                args=(
                    rank,
                    jobs,
                    settings,
                    threads,
                    channels_last,
                    pool_path,
                    barrier,
                    queue,
                ),
                daemon=True,
            )
        )
    results = _run_workers(procs, barrier, queue, "PyTorch")
    t = np.array([r["t"] for r in results])  # workers x (start, built, first, end)
    return {
        "wall": t[:, 3].max() - t[:, 0].min(),
        "build": (t[:, 1] - t[:, 0]).max(),
        "first": (t[:, 2] - t[:, 1]).max(),
        "steady": (t[:, 3] - t[:, 2]).max(),
        "loss": float(np.mean([v for r in results for v in r["losses"]])),
        "torch": results[0]["torch"],
        "mkldnn": results[0]["mkldnn"],
    }


# ----------------------------------------------------------------- report


def _machine():
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": model,
        "nproc": usable or os.cpu_count(),
        "load": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _versions():
    out = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy", "torch"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _table(rows, args, n):
    steps = args.steps - 1
    header = (
        f"{'side / layout':<36} {'steady cand-img/s':>17} {'wall s':>8} "
        f"{'build s':>8} {'first s':>8} {'loss':>6}"
    )
    print(header)
    print("-" * len(header))
    summary = {}
    for name, runs in rows.items():
        med = {
            k: statistics.median(r[k] for r in runs)
            for k in ("wall", "build", "first", "steady", "loss")
        }
        speeds = [n * args.batch * steps / r["steady"] for r in runs]
        med["img_s"] = statistics.median(speeds)
        spread = f" ({min(speeds):.0f}-{max(speeds):.0f})" if len(runs) > 1 else ""
        print(
            f"{name:<36} {med['img_s']:>8.0f}{spread:<9} {med['wall']:>8.1f} "
            f"{med['build']:>8.2f} {med['first']:>8.2f} {med['loss']:>6.3f}"
        )
        summary[name] = med
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--space", default="mobilenetv2")
    parser.add_argument("--law", default="s6")
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--indices", default=None, help="e.g. 27,39 (overrides)")
    parser.add_argument(
        "--select",
        choices=("first", "shared"),
        default="first",
        help="first: the first indices that build; shared: the first indices "
        "of one bucket key (equal up to widths: few programs)",
    )
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pool", type=int, default=8, help="distinct batches")
    parser.add_argument("--data", default="random", help="random or a jnas dataset")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--max-waste", type=float, default=2.0)
    parser.add_argument("--max-bucket", type=int, default=8, help="0: no bound")
    parser.add_argument("--choice", default="rule", help="rule, autotune or a strategy")
    parser.add_argument("--conv-impl", default="auto", help="auto, xla or im2col")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes of the 'procs' layout (default: usable cores)",
    )
    parser.add_argument(
        "--layouts", default="loop,procs", help="PyTorch layouts to run"
    )
    parser.add_argument(
        "--formats",
        default="contiguous,channels_last",
        help="PyTorch memory formats to run",
    )
    parser.add_argument(
        "--jnas-layout",
        default="procs",
        choices=("procs", "one"),
        help="procs: one pinned process per core (what launch.search does on a "
        "CPU); one: a single process",
    )
    parser.add_argument("--cache", default=None, help="persistent compile cache")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be >= 2 (the first step is timed apart)")

    import jax

    from jnas.population import engine

    engine.enable_compilation_cache(args.cache)
    machine, versions = _machine(), _versions()
    ncpu = machine["nproc"]
    workers = args.workers or ncpu
    archs = candidates(args.space, args.law, args.candidates, args.indices, args.select)
    n = len(archs)
    pool = make_batches(args, archs[0].input_shape, archs[0].num_classes)
    from jnas import cost

    print(
        f"{datetime.datetime.now().isoformat(timespec='seconds')}  "
        f"{machine['cpu']}, {ncpu} usable cores, load {machine['load']}"
    )
    print("  ".join(f"{k} {v}" for k, v in versions.items()))
    print(
        f"jax backend {jax.default_backend()}; compilation cache "
        f"{jax.config.jax_compilation_cache_dir or 'off'}"
    )
    idx = [dict(a.meta)["index"] for a in archs]
    print(
        f"{args.space} {args.law}: {n} candidates ({args.select}), indices {idx}, "
        f"{sum(cost.macs(a) for a in archs) / n / 1e6:.1f} MMAC/image on average; "
        f"batch {args.batch}, {args.steps} steps, data {args.data} "
        f"({len(pool[0])} batches cycled), SGD lr {args.lr} momentum "
        f"{args.momentum} wd {args.weight_decay}"
    )
    torch_configs = []
    for layout in args.layouts.split(","):
        for fmt in args.formats.split(","):
            if layout == "loop":
                procs, threads = 1, ncpu
                name = f"pytorch loop 1x{threads} thr, {fmt}"
            elif layout == "procs":
                procs, threads = workers, 1
                name = f"pytorch {procs} procs x 1 thr, {fmt}"
            else:
                parser.error(f"unknown layout {layout!r}")
            if fmt not in ("contiguous", "channels_last"):
                parser.error(f"unknown format {fmt!r}")
            torch_configs.append((name, procs, threads, fmt == "channels_last"))

    rows: dict[str, list] = {}
    jnas_name = "jnas population engine"
    if args.jnas_layout == "procs":
        jnas_name = f"jnas {workers} pinned procs (the main job's layout)"
    buckets = compiles = None
    with tempfile.TemporaryDirectory() as tmp:
        pool_path = os.path.join(tmp, "pool.npz")
        np.savez(pool_path, images=pool[0], labels=pool[1])
        for r in range(args.repeats):
            print(f"round {r + 1}/{args.repeats}: jnas", end="", flush=True)
            if args.jnas_layout == "procs":
                result = run_jnas_procs(archs, args, pool_path, workers)
            else:
                result = run_jnas(archs, args, pool)
            buckets, compiles = result["buckets"], result["compiles"]
            rows.setdefault(jnas_name, []).append(result)
            for name, procs, threads, cl in torch_configs:
                print(f", {name}", end="", flush=True)
                result = run_torch(archs, args, pool_path, procs, threads, cl)
                versions["torch"] = result["torch"]
                rows.setdefault(name, []).append(result)
            print()
    print(
        f"\njnas: {len(buckets)} bucket(s) (size:strategy/lowering: "
        f"{' '.join(buckets)}), {compiles} step programs compiled = "
        f"{len(buckets) * 8 / n:.2f} programs per 8 candidates"
    )
    print(
        f"steady = {n} candidates x {args.batch} images x {args.steps - 1} steps "
        f"after the first / their time; wall = {args.steps} steps incl. "
        f"build and compile; median of {args.repeats}\n"
    )
    summary = _table(rows, args, n)
    torch_rows = {k: v for k, v in summary.items() if k != jnas_name}
    if torch_rows:
        mine = summary[jnas_name]
        fast = max(torch_rows, key=lambda k: torch_rows[k]["img_s"])
        quick = min(torch_rows, key=lambda k: torch_rows[k]["wall"])
        print(
            f"\njnas / PyTorch-best, steady: "
            f"{mine['img_s'] / torch_rows[fast]['img_s']:.2f}x (best: {fast})"
        )
        print(
            f"jnas / PyTorch-best, wall (PyTorch time / jnas time): "
            f"{torch_rows[quick]['wall'] / mine['wall']:.2f}x (best: {quick})"
        )
    if args.json:
        out = {
            "args": vars(args),
            "machine": machine,
            "versions": versions,
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "indices": idx,
            "buckets": buckets,
            "compiles": compiles,
            "summary": summary,
            "runs": {
                k: [{m: v for m, v in r.items()} for r in runs]
                for k, runs in rows.items()
            },
        }
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
