"""The interactive report: one self-contained HTML file, rebuilt from a workdir.

`write_report(workdir)` writes ``report.html``: accuracy vs memory and vs
latency (one plotly trace per number format, each format's Pareto front,
budgets as lines), memory and latency budget controls that re-highlight the
feasible set and its fronts, a details panel for the clicked candidate
(layers from the IR, costs, format search, learning curve, the export
command) and a sortable, filterable table of every candidate.

Plotting is plotly's, its library embedded in the file (no network when
opened): plotly.js's basic bundle (scatter traces only), vendored in
``vendor/`` because the browser runs the embedded library before it draws
anything and the full bundle's start alone took longer than the page's 2 s
budget (vendor/README.md). The page's own script is glue only: it filters points by the
budgets, recomputes each front with `jnas.report.pareto.front`'s rule (cost
ascending, then accuracy descending, then index; keep strictly rising
accuracy) and fills the panel and the table. ``window.jnasReport`` exposes
that state to tests.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jnas import arch as arch_lib
from jnas import results, storage
from jnas.report import pareto
from jnas.report import records as rec

REPORT = "report.html"
PLOTLY_JS = Path(__file__).parent / "vendor" / "plotly-basic.min.js"
COLORS = {"float32": "#1f77b4", "half": "#ff7f0e", "custom": "#2ca02c"}


def _num(value: Any) -> float | None:
    v = rec.num(value)
    return None if math.isnan(v) else v


def _layers(record: Mapping[str, Any]) -> list[list[Any]]:
    if not record.get("arch"):
        return []
    arch = arch_lib.from_dict(record["arch"])
    return [
        [n.name, n.op, ",".join(n.inputs), "x".join(map(str, arch.shapes[n.name]))]
        for n in arch.nodes
    ]


def _packed(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode()


def report_data(
    records: Sequence[Mapping[str, Any]],
    curves: Sequence[Mapping[str, Any]],
    workdir: str = "DIR",
) -> dict[str, Any]:
    """The JSON the page is built from: one entry per record, in order."""
    split = rec.choose_split(records)
    lat = rec.latencies(records)
    by_hash: dict[str, list[list[Any]]] = {}
    for row in curves:
        by_hash.setdefault(row["hash"], []).append(
            [row["step"], row.get("loss"), row.get("train_accuracy")]
        )
    points = []
    for i, r in enumerate(records):
        acc = {f: _num(rec.accuracies([r], f, split)[0]) for f in rec.FORMATS}
        mem = {f: _num(rec.memories([r], f)[0]) for f in rec.FORMATS}
        points.append(
            {
                "i": i,
                "hash": r["hash"],
                "name": f"{r.get('space')}:{r.get('law')}:{r.get('index')}",
                "params": r.get("params"),
                "flops": r.get("flops"),
                "latency": _num(lat[i]),
                "memory": mem,
                "accuracy": acc,
                "custom_format": r.get("custom_format"),
                "feasible": bool(r.get("feasible")),
                "grid": [
                    [g.get("format"), g.get("bits"), g.get("val")]
                    for g in r.get("format_grid") or []
                ],
                "curve": by_hash.get(r["hash"], []),
                "export": None
                if r.get("release") is not None
                else (
                    f"python -m launch.export --workdir={workdir} "
                    f"--candidate={r['hash'][:12]} --out=export_{r['hash'][:8]}"
                ),
            }
        )
    return {
        "split": split,
        "points": points,
        "latency_label": rec.latency_label(records),
        # Every layer table in one gzip + base64 blob, inflated by the page on
        # the first click: the replay's 1617 tables are 18 MB as plain JSON.
        "layers": _packed([_layers(r) for r in records]),
    }


def fronts(
    data: Mapping[str, Any], memory: float, latency: float, cost: str = "memory"
) -> dict[str, list]:
    """Per format, the front (record indices) of the points within both budgets.

    What the page highlights for those budgets (`jnas.report.pareto.front` on
    the feasible subset), accuracy against `cost` ("memory" in that format,
    or "latency": each plot's x); the browser test compares the two.
    """
    out = {}
    for f in rec.FORMATS:
        pts = [
            p
            for p in data["points"]
            if p["memory"][f] is not None
            and p["accuracy"][f] is not None
            and p["memory"][f] <= memory
            and (p["latency"] is None or p["latency"] <= latency)
            and (cost == "memory" or p["latency"] is not None)
        ]
        costs = [p["memory"][f] if cost == "memory" else p["latency"] for p in pts]
        idx = pareto.front(costs, [p["accuracy"][f] for p in pts])
        out[f] = [pts[k]["i"] for k in idx]
    return out


def _figures(data: Mapping[str, Any]) -> tuple[str, str]:
    import plotly.graph_objects as go

    # SVG markers (the basic bundle has no WebGL traces): a 1,617-record
    # replay draws both plots in about 0.6 s (benchmarks/report_open.py).
    def figure(title, x_title):
        fig = go.Figure()
        for f in rec.FORMATS:
            # The points' x, y, ids and hover texts are filled in by the
            # page from the data (embedding them here doubled the file).
            fig.add_trace(
                go.Scatter(
                    x=[],
                    y=[],
                    mode="markers",
                    name=f,
                    marker={"color": COLORS[f], "size": 8},
                    hovertemplate="%{text}<br>accuracy %{y:.4f}<extra></extra>",
                )
            )
        for f in rec.FORMATS:  # fronts, filled in by the page's script
            fig.add_trace(
                go.Scatter(
                    x=[],
                    y=[],
                    mode="lines",
                    name=f"{f} front",
                    line={"color": COLORS[f], "shape": "hv"},
                    hoverinfo="skip",
                )  # fmt: skip
            )
        fig.update_layout(
            title={"text": title, "x": 0.06, "xanchor": "left"},
            xaxis={"title": x_title, "type": "log"},
            yaxis={"title": f"{data['split']} accuracy"},
            height=480,
            margin={"t": 50, "b": 50},
            # plotly.js's own look: the default Python template (7 kB of
            # per-trace defaults) cost about 0.5 s of drawing per page.
            template="none",
        )
        return fig.to_json()

    memory = figure("Accuracy vs memory", "memory [B]")
    latency = figure("Accuracy vs latency", data["latency_label"])
    return memory, latency


def render(data: Mapping[str, Any], title: str) -> str:
    """The whole page (plotly's library inlined)."""
    memory_fig, latency_fig = _figures(data)
    script = (Path(__file__).parent / "report.js").read_text()
    payload = json.dumps(data).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
.row {{ display: flex; flex-wrap: wrap; gap: 1em; }}
.row > div {{ flex: 1 1 560px; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; }}
th {{ cursor: pointer; background: #eee; }}
#details {{ border: 1px solid #999; padding: 0.5em; min-height: 3em; }}
code {{ background: #f4f4f4; }}
</style>
<script>{PLOTLY_JS.read_text(encoding="utf-8")}</script>
</head><body>
<h1>{html.escape(title)}</h1>
<p>{len(data["points"])} candidates; accuracy on the {data["split"]} split.
Click a point (or a table row) for its details.</p>
<div>
  memory budget: <input id="memory" type="range" min="0" max="100" value="100">
  <span id="memory_value"></span>
  &nbsp; latency budget: <input id="latency" type="range" min="0" max="100" value="100">
  <span id="latency_value"></span>
</div>
<div class="row"><div id="memory_plot"></div><div id="latency_plot"></div></div>
<h2>Details</h2><div id="details">No candidate selected.</div>
<h2>All candidates</h2>
<p>Filter: <input id="filter" size="40" placeholder="text in any column"></p>
<table id="table"></table>
<p><span id="rows_shown"></span> <button id="show_all" hidden>show all</button></p>
<script id="jnas-data" type="application/json">{payload}</script>
<script>
const JNAS_FIGURES = {{memory: {memory_fig}, latency: {latency_fig}}};
{script}
</script>
</body></html>
"""


def write_report(workdir: str | Path) -> Path:
    """Writes ``workdir/report.html`` from the workdir's records and curves."""
    workdir = storage.path(workdir)
    records = results.load(workdir)
    if not records:
        raise rec.NoDataError(f"{workdir} holds no result records to report")
    data = report_data(records, results.load_curves(workdir), str(workdir))
    out = workdir / REPORT
    storage.atomic_write(out, render(data, f"jnas search: {workdir.name}"))
    return out
