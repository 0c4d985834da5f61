"""A second device's latency table: the release's networks in PyTorch eager on this host.

The latency recipe (``jnas.latency.fit_table``) must work for devices the
project was not tuned on. This script makes such a table here, with a
framework jnas never uses for inference: each release network built from its
IR (``benchmarks/torch_ir.py``), PyTorch eager, eval mode, batch 1, float32,
one thread on one core. It writes a release-style JSON list (``spacename``,
``law``, ``id``, ``t_avg``, ``t_std`` in ms, as ``results_RaspPi.json``) that
``latency.read_release_table`` and ``benchmarks/latency_eval.py`` read, plus
every round's time (``t_rounds``) so the table's own repeat noise can be
measured without a predictor.

Protocol: networks in chunks of 16; ``--rounds`` interleaved rounds over each
chunk (a slow phase of a shared machine touches the whole chunk alike), each
round the median of ``--calls`` calls after 3 warm-up calls; ``t_avg`` is the
median of the round medians, ``t_std`` their robust std
(1.4826 x the median absolute deviation). Resumable: measured rows are
appended to ``OUT.jsonl`` (fsynced per chunk) and skipped on a rerun; the JSON
list ``OUT`` is rewritten atomically after each chunk.

Run:  .venv/bin/python benchmarks/latency_torch_table.py --out /tmp/torch_table.json
      [--limit 600] [--core 1]      (~0.3 s per network on the 2-core dev VM)
Needs the ``bench`` extra (torch) and ../shared/iotnets (the release's configs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # torch_ir

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch_ir  # noqa: E402

from jnas import spaces  # noqa: E402

DEFAULT_RELEASE = (
    Path(__file__).resolve().parents[2] / "shared/iotnets/results_RaspPi.json"
)


def _time_calls(module, x, calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        module(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure_chunk(rows, rounds: int, calls: int) -> list[dict]:
    """Times every network of ``rows`` in ``rounds`` interleaved rounds."""
    built = []
    for row in rows:
        arch = spaces.sample(row["spacename"], row["law"], row["id"])
        module = torch_ir.build(arch).eval()
        h, w, c = arch.input_shape
        x = torch.randn(1, c, h, w)
        with torch.inference_mode():
            for _ in range(3):
                module(x)
        built.append((row, module, x))
    per_round = [[] for _ in built]
    with torch.inference_mode():
        for _ in range(rounds):
            for i, (_, module, x) in enumerate(built):
                per_round[i].append(_time_calls(module, x, calls))
    out = []
    for (row, _, _), ts in zip(built, per_round, strict=True):
        out.append(
            {
                "spacename": row["spacename"],
                "law": row["law"],
                "id": row["id"],
                "t_avg": float(np.median(ts)),
                # Robust: a round slowed by another tenant (1.5-2x here) would
                # dominate a plain std.
                "t_std": float(
                    1.4826 * np.median(np.abs(np.array(ts) - np.median(ts)))
                ),
                "t_rounds": ts,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, default=DEFAULT_RELEASE)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=0, help="0: all rows")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--core", type=int, default=-1, help="pin to this core")
    parser.add_argument("--seed", type=int, default=0, help="order of the rows")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.core >= 0:
        os.sched_setaffinity(0, {args.core})
    rows = json.loads(args.release.read_text())
    seen, unique = set(), []
    for row in rows:  # repeated configurations are measured once
        key = (row["spacename"], row["law"], row["id"])
        if key not in seen:
            seen.add(key)
            unique.append(row)
    order = np.random.default_rng(args.seed).permutation(len(unique))
    todo = [unique[i] for i in order]
    if args.limit:
        todo = todo[: args.limit]
    log = args.out.with_suffix(".jsonl")
    done = []
    if log.exists():
        for line in log.read_text().splitlines():
            try:
                done.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a killed run's torn last line
    have = {(r["spacename"], r["law"], r["id"]) for r in done}
    todo = [r for r in todo if (r["spacename"], r["law"], r["id"]) not in have]
    host = f"{platform.processor() or platform.machine()}, torch {torch.__version__}"
    print(f"{len(done)} measured, {len(todo)} to go ({host}, 1 thread)", flush=True)
    start = time.perf_counter()
    for k in range(0, len(todo), 16):
        measured = measure_chunk(todo[k : k + 16], args.rounds, args.calls)
        with log.open("a") as f:
            for row in measured:
                f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        done += measured
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps([dict(r, host=host) for r in done]))
        os.replace(tmp, args.out)
        print(f"{len(done)} networks, {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
