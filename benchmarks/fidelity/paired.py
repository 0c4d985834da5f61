"""Issue 35 part 1: jnas's seeds against PyTorch's, paired per network.

Reads jnas's float32 test accuracies from the reproduction's workdirs (phase 1
is seed 0; the "seeds" variant's runs are seeds 1 and 2) and the PyTorch
loop's (benchmarks/fidelity/torch_train.py, one JSON per network and seed),
and prints per network: the seeds on each side, their means, the difference
jnas - PyTorch with a Welch 95% interval; then pooled over the networks: the
mean difference with two 95% intervals, one from the spread of the networks'
differences (t over networks) and one from the seed variance pooled over
every network and both sides (what the seeds alone explain).

    python benchmarks/fidelity/paired.py \
        --jnas results/reproduce_phase1 results/reproduce_seed1 \
               results/reproduce_seed2 \
        --torch 'results/fidelity/torch/torch_*_seed*.json' \
        --out results/fidelity/paired.json
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

parser = argparse.ArgumentParser()
parser.add_argument("--jnas", nargs="+", required=True, help="workdirs, one seed each")
parser.add_argument("--torch", required=True, help="glob of torch_train.py outputs")
parser.add_argument("--out", default="")
args = parser.parse_args()

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from jnas import results  # noqa: E402

jnas: dict[str, list[float]] = {}
for workdir in args.jnas:
    for record in results.load(workdir):
        net = f"{record['law']}:{record['index']}"
        jnas.setdefault(net, []).append(100 * record["accuracy"]["float32"]["test"])
torch_acc: dict[str, list[float]] = {}
for path in sorted(glob.glob(args.torch)):
    run = json.loads(Path(path).read_text())
    torch_acc.setdefault(run["net"], []).append(100 * run["test_accuracy"])

nets = sorted(
    n for n in torch_acc if len(jnas.get(n, [])) >= 2 and len(torch_acc[n]) >= 2
)
if not nets:
    raise SystemExit("no network with at least two seeds on both sides")
rows, diffs, residuals = [], [], []
print(
    "| network | jnas seeds | PyTorch seeds | jnas mean | PyTorch mean | jnas - PyTorch [95%] |"
)
print("|---|---|---|---|---|---|")
for net in nets:
    a, b = np.array(jnas[net]), np.array(torch_acc[net])
    d = a.mean() - b.mean()
    welch = stats.ttest_ind(a, b, equal_var=False)
    lo, hi = welch.confidence_interval(0.95)
    diffs.append(d)
    residuals += [a - a.mean(), b - b.mean()]
    rows.append(
        {
            "net": net,
            "jnas": a.tolist(),
            "torch": b.tolist(),
            "difference": d,
            "interval": [lo, hi],
        }
    )
    print(
        f"| {net} | {', '.join(f'{x:.2f}' for x in a)} | "
        f"{', '.join(f'{x:.2f}' for x in b)} | {a.mean():.2f} | {b.mean():.2f} | "
        f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}] |"
    )

diffs = np.array(diffs)
k = len(diffs)
mean = diffs.mean()
# Over networks: the differences' own spread (t with k - 1 dof).
half_net = (
    stats.t.ppf(0.975, k - 1) * diffs.std(ddof=1) / np.sqrt(k) if k > 1 else np.nan
)
# From the seeds: pooled within-network variance of both sides.
dof = sum(len(r) - 1 for r in residuals)
s2 = sum(float((r**2).sum()) for r in residuals) / dof
var_d = np.mean([s2 / len(jnas[n]) + s2 / len(torch_acc[n]) for n in nets]) / k
half_seed = stats.t.ppf(0.975, dof) * np.sqrt(var_d)
print(
    f"\npooled over {k} networks: jnas - PyTorch = {mean:+.2f} points; 95% interval "
    f"[{mean - half_net:+.2f}, {mean + half_net:+.2f}] over networks (sd of the "
    f"differences {diffs.std(ddof=1):.2f}), [{mean - half_seed:+.2f}, "
    f"{mean + half_seed:+.2f}] from the seeds (pooled seed sd {np.sqrt(s2):.2f}, "
    f"{dof} dof)"
)
if args.out:
    Path(args.out).write_text(
        json.dumps(
            {
                "networks": rows,
                "mean_difference": mean,
                "interval_over_networks": [mean - half_net, mean + half_net],
                "interval_from_seeds": [mean - half_seed, mean + half_seed],
                "seed_sd": float(np.sqrt(s2)),
            },
            indent=1,
        )
    )
