// Overview charts: GPU memory and utilization, and time to first audio (p50/p99), over the
// last hours. Points come with the page, then one a minute over the live stream ("history").
"use strict";

(function () {
  const GIB = 2 ** 30;
  const charts = {};
  let step = 60, keep = 6 * 3600;

  function clock(seconds) {
    const at = new Date(seconds * 1000);
    return at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function timeAxis() {
    return { type: "linear", ticks: { callback: (value) => clock(value), maxTicksLimit: 6 } };
  }

  function make(id, datasets, y) {
    const canvas = document.getElementById(id);
    if (!canvas || !window.Chart) return null;
    return new window.Chart(canvas, {
      type: "line",
      data: { datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        parsing: false,
        spanGaps: false,
        elements: { point: { radius: 0 }, line: { borderWidth: 2 } },
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: { x: timeAxis(), ...y },
        plugins: { tooltip: { callbacks: { title: (items) => clock(items[0].parsed.x) } } },
      },
    });
  }

  function gpuPoints(p) {
    if (p.vram_used_bytes === null) return null;
    return [{ x: p.at, y: p.vram_used_bytes / GIB }, { x: p.at, y: p.utilization_pct }];
  }

  function latencyPoints(p) {
    if (!p.turns) return null;
    return [{ x: p.at, y: p.p50_s }, { x: p.at, y: p.p99_s }];
  }

  // A minute with nothing new leaves a gap: the line breaks there rather than draw a slope
  // across hours nobody talked.
  function add(chart, points) {
    if (!chart || !points) return false;
    chart.data.datasets.forEach((set, i) => {
      if (points[i].y === null) return;
      const last = set.data[set.data.length - 1];
      if (last && points[i].x - last.x > 1.5 * step) set.data.push({ x: last.x + step, y: null });
      set.data.push(points[i]);
      while (set.data.length && set.data[0].x < points[i].x - keep) set.data.shift();
    });
    chart.options.scales.x.max = points[0].x;
    chart.options.scales.x.min = points[0].x - keep;
    return true;
  }

  function show(kind) {
    const note = document.querySelector(`[data-empty-for="${kind}"]`);
    if (note) note.hidden = true;
  }

  function take(point) {
    if (add(charts.gpu, gpuPoints(point))) show("gpu");
    if (add(charts.latency, latencyPoints(point))) show("latency");
  }

  document.addEventListener("DOMContentLoaded", () => {
    const data = document.getElementById("history-data");
    const history = JSON.parse(data.textContent);
    step = parseFloat(data.dataset.step) || step;
    keep = parseFloat(data.dataset.keep) || keep;
    const total = history.map((p) => p.vram_total_bytes).filter((v) => v).pop();
    charts.gpu = make(
      "gpu-chart",
      [
        { label: "VRAM used (GiB)", data: [], borderColor: "#2356c7", backgroundColor: "#2356c733", fill: true, yAxisID: "y" },
        { label: "utilization (%)", data: [], borderColor: "#f59f00", yAxisID: "util" },
      ],
      {
        y: { beginAtZero: true, max: total ? total / GIB : undefined, title: { display: true, text: "GiB" } },
        util: { position: "right", min: 0, max: 100, grid: { drawOnChartArea: false }, title: { display: true, text: "%" } },
      },
    );
    charts.latency = make(
      "latency-chart",
      [
        { label: "p50 (s)", data: [], borderColor: "#2f9e44" },
        { label: "p99 (s)", data: [], borderColor: "#c92a2a" },
      ],
      { y: { beginAtZero: true, title: { display: true, text: "seconds" } } },
    );
    history.forEach(take);
    Object.values(charts).forEach((chart) => chart && chart.update("none"));
    VO.on("history", (point) => {
      take(point);
      Object.values(charts).forEach((chart) => chart && chart.update("none"));
    });
  });
})();
