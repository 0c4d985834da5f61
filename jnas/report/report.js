// Glue of the jnas report (jnas/report/html.py): budgets, fronts, details, table.
// Plotting is plotly's; this script only filters, recomputes fronts with the
// rule of jnas.report.pareto.front, and fills the panel and the table.
(function () {
  const started = performance.now();  // plotly's library parsed and run
  const data = JSON.parse(document.getElementById("jnas-data").textContent);
  const P = data.points;
  const FORMATS = ["float32", "half", "custom"];
  const distinct = (values) =>
    [...new Set(values.filter((v) => v !== null && isFinite(v)))].sort((a, b) => a - b);
  const memoryBudgets = distinct(P.flatMap((p) => FORMATS.map((f) => p.memory[f])));
  const latencyBudgets = distinct(P.map((p) => p.latency));
  memoryBudgets.push(Infinity);
  latencyBudgets.push(Infinity);
  const state = {memory: Infinity, latency: Infinity};

  function fits(p, f) {
    return p.memory[f] !== null && p.memory[f] <= state.memory &&
      (p.latency === null || p.latency <= state.latency);
  }
  // pareto.front: cost ascending, accuracy descending, index ascending;
  // keep the points whose accuracy rises strictly.
  // The cost is the plot's x: memory in format f, or latency.
  const memoryOf = (p, f) => p.memory[f];
  const latencyOf = (p) => p.latency;
  function front(f, costOf = memoryOf) {
    const pts = P.filter((p) => p.accuracy[f] !== null && costOf(p, f) !== null &&
      fits(p, f));
    pts.sort((a, b) => costOf(a, f) - costOf(b, f) ||
      b.accuracy[f] - a.accuracy[f] || a.i - b.i);
    const kept = [];
    let best = -Infinity;
    for (const p of pts) {
      if (p.accuracy[f] > best) { kept.push(p.i); best = p.accuracy[f]; }
    }
    return kept;
  }

  function draw() {
    for (const [plot, xOf] of [["memory_plot", memoryOf], ["latency_plot", latencyOf]]) {
      const fronts = FORMATS.map((f) => front(f, xOf));
      const div = document.getElementById(plot);
      // One update per plot (each restyle or relayout redraws it).
      const colors = [], xs = [], ys = [];
      FORMATS.forEach((f, t) => {
        // Opacity, not colour: the legend keeps each format's colour.
        colors.push(div.data[t].customdata.map((i) => (fits(P[i], f) ? 1.0 : 0.12)));
        xs.push(fronts[t].map((i) => xOf(P[i], f)));
        ys.push(fronts[t].map((i) => P[i].accuracy[f]));
      });
      const limit = plot === "memory_plot" ? state.memory : state.latency;
      const shapes = isFinite(limit) ? [{type: "line", xref: "x", yref: "paper",
        x0: limit, x1: limit, y0: 0, y1: 1, line: {dash: "dash", color: "#c00"}}] : [];
      const n = FORMATS.length;
      Plotly.update(div,
        {"marker.opacity": [...colors, ...xs.map(() => undefined)],
         x: [...FORMATS.map((f, t) => div.data[t].x), ...xs],
         y: [...FORMATS.map((f, t) => div.data[t].y), ...ys]},
        {shapes: shapes}, [...Array(2 * n).keys()]);
    }
    labels();
  }

  function labels() {
    const label = (v, unit) => (isFinite(v) ? +v.toPrecision(4) + " " + unit : "none");
    document.getElementById("memory_value").textContent = label(state.memory, "B");
    document.getElementById("latency_value").textContent = label(state.latency, "ms");
  }

  function setFromSliders() {
    const m = +document.getElementById("memory").value;
    const l = +document.getElementById("latency").value;
    state.memory = memoryBudgets[Math.round(m / 100 * (memoryBudgets.length - 1))];
    state.latency = latencyBudgets[Math.round(l / 100 * (latencyBudgets.length - 1))];
    draw();
  }

  const show = (v) => (v === null || v === undefined ? "" :
    typeof v === "number" && !Number.isInteger(v) ? String(+v.toPrecision(4)) : String(v));
  function cell(v) {
    const td = document.createElement("td");
    td.textContent = show(v);
    return td;
  }
  function tableOf(head, rows) {
    const t = document.createElement("table");
    const tr = document.createElement("tr");
    head.forEach((h) => { const th = document.createElement("th"); th.textContent = h; tr.appendChild(th); });
    t.appendChild(tr);
    rows.forEach((r) => { const row = document.createElement("tr"); r.forEach((v) => row.appendChild(cell(v))); t.appendChild(row); });
    return t;
  }

  // Every layer table, stored as one gzip blob (html.py), inflated once.
  let inflated = null;
  function layerTables() {
    if (!inflated) {
      const bytes = Uint8Array.from(atob(data.layers), (c) => c.charCodeAt(0));
      inflated = new Response(new Blob([bytes]).stream()
        .pipeThrough(new DecompressionStream("gzip"))).json();
    }
    return inflated;
  }

  function details(i) {
    const p = P[i];
    const box = document.getElementById("details");
    box.innerHTML = "";
    const h = document.createElement("h3");
    h.textContent = p.name + " (" + p.hash.slice(0, 12) + ")";
    box.appendChild(h);
    box.appendChild(tableOf(["", "float32", "half", "custom"], [
      ["accuracy", ...FORMATS.map((f) => p.accuracy[f])],
      ["memory [B]", ...FORMATS.map((f) => p.memory[f])],
    ]));
    const facts = document.createElement("p");
    facts.textContent = "params " + p.params + ", FLOPs " + p.flops + ", latency " +
      show(p.latency) + " ms, custom format " + (p.custom_format || "none") +
      ", feasible " + p.feasible;
    box.appendChild(facts);
    const cmd = document.createElement("p");
    cmd.innerHTML = "Export: <code></code>";
    cmd.querySelector("code").textContent = p.export ||
      "none (a replay record: the release's accuracy, no trained weights)";
    box.appendChild(cmd);
    if (p.grid.length) {
      box.appendChild(document.createTextNode("Format search (validation accuracy):"));
      box.appendChild(tableOf(["format", "bits", "accuracy"], p.grid));
    }
    if (p.curve.length) {
      const c = document.createElement("div");
      c.id = "curve";
      box.appendChild(c);
      Plotly.newPlot(c, [{x: p.curve.map((r) => r[0]), y: p.curve.map((r) => r[1]), name: "loss"},
        {x: p.curve.map((r) => r[0]), y: p.curve.map((r) => r[2]), name: "train accuracy", yaxis: "y2"}],
        {height: 260, title: "learning curve", xaxis: {title: "step"},
         yaxis2: {overlaying: "y", side: "right"}, margin: {t: 40}});
    }
    window.jnasReport.selected = i;
    layerTables().then((tables) => {
        const layers = tables[i];
        if (window.jnasReport.selected !== i || !layers.length) return;
        box.appendChild(document.createTextNode("Layers (the IR):"));
        box.appendChild(tableOf(["node", "op", "inputs", "output"], layers));
      });
  }

  const columns = [["candidate", (p) => p.name], ["params", (p) => p.params],
    ["FLOPs", (p) => p.flops], ["latency ms", (p) => p.latency],
    ...FORMATS.map((f) => [f + " acc", (p) => p.accuracy[f]]),
    ...FORMATS.map((f) => [f + " B", (p) => p.memory[f]]),
    ["format", (p) => p.custom_format], ["feasible", (p) => p.feasible]];
  const order = {column: 0, ascending: true};
  // Rows laid out at once: the browser lays out every row it is given, and
  // all 1,617 of the replay's took about 0.8 s after the script had run.
  const view = {pageSize: 200, all: false};
  function table() {
    const text = document.getElementById("filter").value.toLowerCase();
    const rows = P.filter((p) => columns.some(([, get]) =>
      String(get(p)).toLowerCase().includes(text)));
    const get = columns[order.column][1];
    rows.sort((a, b) => {
      const x = get(a), y = get(b);
      const c = x === y ? a.i - b.i : (x === null ? 1 : y === null ? -1 : (x < y ? -1 : 1));
      return order.ascending ? c : -c;
    });
    const page = view.all ? rows : rows.slice(0, view.pageSize);
    const t = tableOf(columns.map(([name]) => name), page.map((p) => columns.map(([, g]) => g(p))));
    t.id = "table";
    t.querySelectorAll("th").forEach((th, k) => th.addEventListener("click", () => {
      order.ascending = order.column === k ? !order.ascending : true;
      order.column = k;
      table();
    }));
    t.querySelectorAll("tr").forEach((tr, k) => {
      if (k > 0) tr.addEventListener("click", () => details(page[k - 1].i));
    });
    document.getElementById("table").replaceWith(t);
    document.getElementById("rows_shown").textContent = page.length < rows.length ?
      `${page.length} of ${rows.length} matching candidates shown` :
      `${rows.length} matching candidates`;
    document.getElementById("show_all").hidden = page.length === rows.length;
  }

  window.jnasReport = {
    pointCount: () => document.getElementById("memory_plot").data.slice(0, 3)
      .reduce((n, t) => n + t.x.length, 0),
    setBudgets: (memory, latency) => { state.memory = memory; state.latency = latency; draw(); },
    highlighted: () => Object.fromEntries(FORMATS.map((f) =>
      [f, P.filter((p) => p.accuracy[f] !== null && fits(p, f)).map((p) => p.i)])),
    fronts: () => Object.fromEntries(FORMATS.map((f) => [f, front(f)])),
    latencyFronts: () => Object.fromEntries(FORMATS.map((f) => [f, front(f, latencyOf)])),
    budgets: () => ({memory: state.memory, latency: state.latency}),
    selected: null,
    view: view,  // table rows: the first view.pageSize unless view.all
    table: table,
    details: details,
  };

  // The figures come from plotly's Python API without their points; fill
  // each format's trace from the data (the memory plot's x is that format's
  // memory, the latency plot's the candidate's latency).
  const hover = (p, f) => p.name + "<br>params " + p.params + ", FLOPs " + p.flops +
    "<br>memory " + p.memory[f] + " B, latency " + show(p.latency) + " ms<br>" + f +
    (f === "custom" ? " (" + p.custom_format + ")" : "");
  // The fronts (no budget yet) go in too: one drawing per plot at load.
  function withPoints(fig, xOf) {
    FORMATS.forEach((f, t) => {
      const pts = P.filter((p) => p.accuracy[f] !== null);
      Object.assign(fig.data[t], {x: pts.map((p) => xOf(p, f)),
        y: pts.map((p) => p.accuracy[f]), customdata: pts.map((p) => p.i),
        text: pts.map((p) => hover(p, f))});
      const kept = front(f, xOf);
      Object.assign(fig.data[FORMATS.length + t], {x: kept.map((i) => xOf(P[i], f)),
        y: kept.map((i) => P[i].accuracy[f])});
    });
    return fig;
  }
  const memoryFig = withPoints(JNAS_FIGURES.memory, memoryOf);
  const latencyFig = withPoints(JNAS_FIGURES.latency, latencyOf);
  Promise.all([
    Plotly.newPlot("memory_plot", memoryFig.data, memoryFig.layout),
    Plotly.newPlot("latency_plot", latencyFig.data, latencyFig.layout),
  ]).then(() => {
    for (const plot of ["memory_plot", "latency_plot"]) {
      document.getElementById(plot).on("plotly_click", (ev) => {
        const pt = ev.points[0];
        if (pt.customdata !== undefined) details(pt.customdata);
      });
    }
    document.getElementById("memory").addEventListener("input", setFromSliders);
    document.getElementById("latency").addEventListener("input", setFromSliders);
    document.getElementById("filter").addEventListener("input", table);
    document.getElementById("show_all").addEventListener("click", () => {
      view.all = true;
      table();
    });
    const drawn = performance.now();
    labels();  // no budget yet: the plots as drawn are up to date
    table();
    // Milliseconds since navigation (for benchmarks): this script started,
    // plots drawn, page ready (table filled).
    window.jnasReport.timing = {started: started, plots: drawn, ready: performance.now()};
    window.jnasReport.ready = true;
  });
})();
