"""Honest evaluation of the latency recipe on every table at hand, in one command.

For each table: over several seeds, fit on a seeded share of the rows (at most
``--train`` of them and at most ``--max-train`` networks) with the public
recipe (``latency.fit_table``: options chosen by cross-validation inside the
training rows only), then test on every other row: within +-5% / +-10%,
median and p90 error, Spearman, all rows and rows with spread < 5%, per
family, and leave-one-family-out (the seed's chosen options refitted on the
other families' training rows, tested on the left-out family's low-spread
rows). Next to it, the table's own noise bound, computed without any
predictor: how often two independent measurements of the same network agree
within 10% (repeated rows of a release table; the two halves of each row's
rounds in a table made by ``benchmarks/latency_torch_table.py``; the two halves
of each network's samples in a calibration file).

Tables:
  --pi PATH               the release's Raspberry Pi table (default: ../shared);
                          fitted twice: the shipped Pi recipe (``fit_pi_table``)
                          and the generic recipe on the Pi device preset
  --table NAME=PATH       a release-style table of a device jnas knows nothing
                          about (generic recipe, ceilings derived from the data)
  --calibration NAME=DIR  this machine's ``launch.calibrate`` workdir: fit on its
                          calibration.jsonl (<= 100 networks), test on
                          evaluation.jsonl (minimum statistic), device
                          ``calibration.local_device()``

Run:  .venv/bin/python benchmarks/latency_eval.py --seeds 0 1 2 \
          --table torch_cpu=/tmp/lat/torch_table.json \
          --calibration local4=/tmp/lat/ll_seed4 [--json OUT]
(2-5 minutes per table and seed on the 2-core dev VM, 2 processes)
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import sys
import time
from concurrent import futures
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # small least-squares problems

import numpy as np  # noqa: E402

from jnas import latency  # noqa: E402
from jnas.latency import calibration, raspi3b, recipe, roofline  # noqa: E402

DEFAULT_PI = Path(__file__).resolve().parents[2] / "shared/iotnets/results_RaspPi.json"
CLEAN = recipe.CLEAN_SPREAD


@dataclasses.dataclass
class Table:
    """One table: entries, how to fit it, and its noise pairs."""

    name: str
    entries: list
    device: roofline.Device | None
    kind: str  # "pi", "generic", "calibration"
    test: list | None = None  # fixed test rows (calibration workdirs)
    pairs: tuple[np.ndarray, np.ndarray] | None = None  # independent re-measurements
    conv_times: dict | None = None  # calibration workdirs: convs timed alone


def family(entry) -> str:
    space = entry.source.get("space") or entry.arch.meta.get("space", "?")
    return str(space).replace("random_net_", "")


def repeat_pairs_release(entries) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a release table that measured the same architecture again."""
    groups = collections.defaultdict(list)
    for e in entries:
        groups[e.arch.hash].append(e.latency_ms)
    a, b = [], []
    for ts in groups.values():
        for i in range(len(ts)):
            for j in range(i + 1, len(ts)):
                a.append(ts[i])
                b.append(ts[j])
    return np.array(a), np.array(b)


def load_torch_table(path: Path) -> tuple[list, tuple[np.ndarray, np.ndarray]]:
    entries = latency.read_release_table(path)
    rows = json.loads(path.read_text())
    halves = []
    for row in rows:
        ts = row.get("t_rounds")
        if ts and len(ts) >= 2:
            h = len(ts) // 2
            halves.append((np.median(ts[:h]), np.median(ts[h:])))
    a, b = zip(*halves, strict=True) if halves else ((), ())
    return entries, (np.array(a), np.array(b))


def load_calibration(workdir: Path):
    """(calibration entries, evaluation entries, split-half pairs) of a workdir."""
    calib = latency.read_calibration(
        workdir / calibration.CALIBRATION, statistic="min_ms"
    )
    evals = latency.read_calibration(
        workdir / calibration.EVALUATION, statistic="min_ms"
    )
    a, b = [], []
    for path in (calibration.CALIBRATION, calibration.EVALUATION):
        for line in (workdir / path).read_text().splitlines():
            try:
                samples = json.loads(line)["measurement"]["samples_ms"]
            except (json.JSONDecodeError, KeyError):
                continue
            h = len(samples) // 2
            a.append(min(samples[:h]))
            b.append(min(samples[h:]))
    return calib, evals, (np.array(a), np.array(b))


def split(n: int, share: float, cap: int, seed: int) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(n)
    mask = np.zeros(n, bool)
    mask[order[: min(round(share * n), cap)]] = True
    return mask


def fit(table: Table, train: list, seed: int) -> tuple:
    """Returns (predictor, chosen options or None, cv report)."""
    if table.kind == "pi":
        train = raspi3b.mark_ticks(train)
    result = latency.fit_table(
        train,
        device=table.device,
        seed=seed,
        weight_spreads=table.kind != "calibration",  # as launch.calibrate
    )
    predictor, report = result.predictor, result.report()
    if table.conv_times:
        chosen = calibration.choose_kernel_level(
            train, result, table.device, table.conv_times, log_fn=lambda _: None
        )
        if chosen:
            predictor = chosen[0]
            report += "\nkernel level chosen (cross-validation)"
    return predictor, result.options, report


def metrics(pred, y, spread):
    out = {"all": latency.evaluate(pred, y)}
    clean = spread / y < CLEAN
    if spread.any() and clean.any():
        out["clean"] = latency.evaluate(pred[clean], y[clean])
    return out


def run_one(table: Table, seed: int, share: float, cap: int) -> dict:
    start = time.perf_counter()
    if table.test is not None:
        train, test = table.entries, table.test
    else:
        mask = split(len(table.entries), share, cap, seed)
        train = [e for e, m in zip(table.entries, mask, strict=True) if m]
        test = [e for e, m in zip(table.entries, mask, strict=True) if not m]
    predictor, options, report = fit(table, train, seed)
    archs = [e.arch for e in test]
    y = np.array([e.latency_ms for e in test])
    spread = np.array([e.spread_ms for e in test])
    pred = predictor.predict_many(archs)
    out = {
        "table": table.name,
        "seed": seed,
        "train": len(train),
        "test": len(test),
        "options": options.describe()
        + (" [kernel level]" if "kernel level chosen" in report else ""),
        "cv_report": report,
        "physical": latency.check_physical(predictor),
        "held_out": metrics(pred, y, spread),
        "per_family": {},
        "leave_one_family_out": {},
    }
    fams = np.array([family(e) for e in test])
    for fam in sorted(set(fams)):
        m = fams == fam
        out["per_family"][fam] = metrics(pred[m], y[m], spread[m])
    train_fams = np.array([family(e) for e in train])
    for fam in sorted(set(train_fams)):
        others = [e for e, f in zip(train, train_fams, strict=True) if f != fam]
        left = [e for e in test if family(e) == fam]
        if len(set(train_fams)) < 2 or not left:
            continue
        if table.kind == "pi":
            others = raspi3b.mark_ticks(others)
        dev = table.device or latency.derive_device(
            [e.arch for e in others], [e.latency_ms for e in others]
        )
        lofo = recipe.fit_options(
            others, dev, options, weight_spreads=table.kind != "calibration"
        )
        yl = np.array([e.latency_ms for e in left])
        sl = np.array([e.spread_ms for e in left])
        out["leave_one_family_out"][fam] = metrics(
            lofo.predict_many([e.arch for e in left]), yl, sl
        )
    out["seconds"] = time.perf_counter() - start
    return out


def noise(table: Table) -> dict | None:
    if table.pairs is None or not len(table.pairs[0]):
        return None
    a, b = table.pairs
    ratio = np.abs(a / b - 1)
    return {
        "pairs": len(a),
        "within_10": float(np.mean(ratio <= 0.10) * 100),
        "within_5": float(np.mean(ratio <= 0.05) * 100),
    }


def fmt(m: dict) -> str:
    return (
        f"n={m['n']:4d} ±10% {m['within_10']:5.1f}  ±5% {m['within_5']:5.1f}  "
        f"med {m['median_ape']:4.1f}%  p90 {m['p90_ape']:5.1f}%  "
        f"rho {m['spearman']:.3f}"
    )


def load_tables(args) -> list[Table]:
    tables = []
    if args.pi and args.pi.exists():
        entries = latency.read_release_table(args.pi)
        pairs = repeat_pairs_release(entries)
        pi = roofline.RASPBERRY_PI_3B_PLUS
        tables.append(Table("pi_generic", entries, pi, "pi", pairs=pairs))
        tables.append(Table("pi_derived", entries, None, "pi", pairs=pairs))
    for spec in args.table:
        name, path = spec.split("=", 1)
        entries, pairs = load_torch_table(Path(path))
        tables.append(Table(name, entries, None, "generic", pairs=pairs))
    for spec in args.calibration:
        name, path = spec.split("=", 1)
        calib, evals, pairs = load_calibration(Path(path))
        tables.append(
            Table(
                name,
                calib,
                calibration.local_device(),
                "calibration",
                test=evals,
                pairs=pairs,
                conv_times=calibration.read_conv_times(Path(path) / calibration.CONVS),
            )
        )
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pi", type=Path, default=DEFAULT_PI)
    parser.add_argument("--no-pi", action="store_true")
    parser.add_argument("--table", action="append", default=[])
    parser.add_argument("--calibration", action="append", default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", type=float, default=0.2)
    parser.add_argument("--max-train", type=int, default=10**9)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.no_pi:
        args.pi = None
    tables = load_tables(args)
    if not tables:
        sys.exit("no table: pass --pi, --table or --calibration")
    jobs = []
    with futures.ProcessPoolExecutor(args.workers) as pool:
        for t in tables:
            seeds = [0] if t.test is not None else args.seeds
            for seed in seeds:
                jobs.append(pool.submit(run_one, t, seed, args.train, args.max_train))
        results = [j.result() for j in jobs]
    summary = {"tables": {}, "runs": results}
    for t in tables:
        runs = [r for r in results if r["table"] == t.name]
        print(f"\n=== {t.name}: {len(t.entries) + len(t.test or [])} rows ===")
        bound = noise(t)
        if bound:
            print(
                f"noise bound (no predictor): {bound['pairs']} re-measured pairs "
                f"within 10% {bound['within_10']:.1f}%, within 5% {bound['within_5']:.1f}%"
            )
        for r in runs:
            print(
                f"seed {r['seed']}: fit on {r['train']}, test {r['test']}, "
                f"{r['options']}, {r['seconds']:.0f} s"
                + (f"  UNPHYSICAL {r['physical']}" if r["physical"] else "")
            )
            for key, m in r["held_out"].items():
                print(f"  {key:6s} {fmt(m)}")
        fams = sorted({f for r in runs for f in r["per_family"]})
        for f in fams:
            vals = [r["per_family"][f] for r in runs if f in r["per_family"]]
            lofo = [
                r["leave_one_family_out"][f]
                for r in runs
                if f in r["leave_one_family_out"]
            ]
            key = "clean" if "clean" in vals[0] else "all"
            line = f"  {f:12s} ±10% ({key}) " + " / ".join(
                f"{v[key]['within_10']:.0f}" for v in vals
            )
            if lofo:
                k2 = "clean" if "clean" in lofo[0] else "all"
                line += (
                    "   leave-out ("
                    + k2
                    + ") "
                    + " / ".join(f"{v[k2]['within_10']:.0f}" for v in lofo)
                )
            print(line)
        summary["tables"][t.name] = {"noise": bound}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
