"""Comparing jnas's own training of released networks with the release's accuracies.

`compare` joins the records of one or more workdirs (the same networks under
different seeds) with the release table (NetConfigs.json rows) on (space, law,
index), and `markdown` writes the tables of docs/reproduction.md: per network
(test accuracy per seed, mean and std, released accuracy, seconds), and per
law the Spearman rank correlation with the released accuracies, within each
law and pooled with each law's mean removed (pooled correlations over laws of
different sizes are inflated by the size differences alone), next to the
yardstick "rank by parameter count" on the same networks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from jnas import spaces


@dataclasses.dataclass(frozen=True)
class Row:
    """One network: its accuracies under each run and in the release.

    Attributes:
      space, law, index: the sample (release key).
      params: trainable parameters (the release's count).
      accuracy: test accuracy (float32) per run, None where a run lacks it.
      released: the release's test accuracy.
      seconds: training seconds per run (None where missing).
    """

    space: str
    law: str
    index: int
    params: int
    accuracy: tuple[float | None, ...]
    released: float
    seconds: tuple[float | None, ...]

    @property
    def runs(self) -> np.ndarray:
        """The accuracies the runs have (NaN-free)."""
        return np.array([a for a in self.accuracy if a is not None], float)


def compare(
    runs: Sequence[Sequence[Mapping[str, Any]]], netconfigs: Sequence[Mapping[str, Any]]
) -> list[Row]:
    """Rows of every network recorded in the first run, in (law, index) order.

    Args:
      runs: each run's records (``results.load``); the first is the reference
        run (e.g. seed 0), the others add seeds for the networks they share.
      netconfigs: the release's NetConfigs.json rows.

    Raises:
      ValueError: a recorded network has no release row (named).
    """
    release = {
        (spaces.canonical(r["spacename"]), r["law"], int(r["id"])): r
        for r in netconfigs
    }
    keyed = [{(r["space"], r["law"], int(r["index"])): r for r in run} for run in runs]
    rows = []
    for key in sorted(keyed[0], key=lambda k: (k[0], k[1], k[2])):
        if key not in release:
            raise ValueError(
                f"{key[0]}:{key[1]}:{key[2]} is not in the release table; compare "
                "only workdirs of released configurations"
            )
        acc, secs = [], []
        for run in keyed:
            r = run.get(key)
            acc.append(None if r is None else _test_accuracy(r))
            secs.append(None if r is None else r["train"]["seconds"])
        rel = release[key]
        rows.append(
            Row(*key, int(rel["params"]), tuple(acc), float(rel["acc"]), tuple(secs))
        )
    return rows


def _test_accuracy(record: Mapping[str, Any]) -> float | None:
    if record["train"]["diverged"]:
        return None
    return record["accuracy"]["float32"]["test"]


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (NaN for fewer than 3 pairs)."""
    if len(a) < 3:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def correlations(rows: Sequence[Row], run: int = 0) -> dict[str, dict[str, float]]:
    """Spearman against the released accuracy: ours and the params yardstick.

    Returns:
      {law: {"n", "ours", "params"}} per law, plus "law-centred" (pooled, each
      law's mean removed from both accuracies; the params yardstick uses
      log-params with each law's mean removed) and "pooled" (as is).
    """
    use = [r for r in rows if r.accuracy[run] is not None]
    out: dict[str, dict[str, float]] = {}
    laws = sorted({(r.space, r.law) for r in use})
    centred_ours, centred_rel, centred_par = [], [], []
    for space, law in laws:
        group = [r for r in use if (r.space, r.law) == (space, law)]
        ours = np.array([r.accuracy[run] for r in group])
        rel = np.array([r.released for r in group])
        par = np.log([r.params for r in group])
        out[f"{space} {law}"] = {
            "n": len(group),
            "ours": spearman(ours, rel),
            "params": spearman(par, rel),
        }
        centred_ours += list(ours - ours.mean())
        centred_rel += list(rel - rel.mean())
        centred_par += list(par - par.mean())
    out["law-centred"] = {
        "n": len(use),
        "ours": spearman(centred_ours, centred_rel),
        "params": spearman(centred_par, centred_rel),
    }
    out["pooled"] = {
        "n": len(use),
        "ours": spearman([r.accuracy[run] for r in use], [r.released for r in use]),
        "params": spearman([r.params for r in use], [r.released for r in use]),
    }
    return out


def markdown(rows: Sequence[Row], labels: Sequence[str]) -> str:
    """The per-network table and the correlation table, as Markdown.

    `labels`: one name per run (e.g. "seed 0", "seed 1").
    """
    pct = lambda v: "" if v is None or not np.isfinite(v) else f"{100 * v:.2f}"
    head = ["network", "params", *labels]
    if len(labels) > 1:
        head += ["mean", "std"]
    head += ["released", "ours - released", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r.space}:{r.law}:{r.index}", str(r.params)]
        cells += [pct(a) for a in r.accuracy]
        runs = r.runs
        mean = runs.mean() if runs.size else None
        if len(labels) > 1:
            cells += [pct(mean), pct(runs.std(ddof=1)) if runs.size > 1 else ""]
        first = r.accuracy[0]
        cells += [
            pct(r.released),
            "" if first is None else f"{100 * (first - r.released):+.2f}",
            "" if r.seconds[0] is None else f"{r.seconds[0]:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Spearman against the released accuracy ({labels[0]}):",
        "",
        "| group | networks | jnas's accuracy | yardstick: parameter count |",
        "|---|---|---|---|",
    ]
    rho = lambda v: f"{v:.3f}" if np.isfinite(v) else "n/a (fewer than 3)"
    for name, c in correlations(rows).items():
        lines.append(f"| {name} | {c['n']} | {rho(c['ours'])} | {rho(c['params'])} |")
    return "\n".join(lines) + "\n"
