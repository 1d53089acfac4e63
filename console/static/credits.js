// Credits page: billed hours per day by idle state (Chart.js, vendored), and the simulator.
"use strict";

(function () {
  const COLORS = { active: "#2f9e44", warm: "#f59f00", cool: "#1c7ed6", cold: "#5f3dc4", dormant: "#868e96" };
  let chart = null;

  function datasets(daily) {
    return Object.keys(COLORS).map((state) => ({
      label: state,
      data: daily.days.map((d) => d.hours_by_state[state]),
      backgroundColor: COLORS[state],
      stack: "hours",
    }));
  }

  function draw(daily) {
    const canvas = document.getElementById("daily-chart");
    if (!canvas || !window.Chart) return;
    const labels = daily.days.map((d) => d.day.slice(5));
    if (chart) {
      chart.data.labels = labels;
      chart.data.datasets.forEach((set, i) => (set.data = datasets(daily)[i].data));
      chart.update("none");
      return;
    }
    chart = new window.Chart(canvas, {
      type: "bar",
      data: { labels, datasets: datasets(daily) },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        scales: {
          x: { stacked: true },
          y: { stacked: true, beginAtZero: true, title: { display: true, text: "billed hours" } },
        },
        plugins: {
          tooltip: {
            callbacks: {
              footer: (items) => {
                const day = daily.days[items[0].dataIndex];
                return `$${day.cost_usd.toFixed(2)} · ${day.billed_hours.toFixed(2)} h billed`;
              },
            },
          },
        },
      },
    });
  }

  const HEADERS = ["Policy", "Billed h", "Cost", "Credits ×", "Wakes w/c/c/d", "Waited", "Wait p50", "p99", "max"];

  function cell(row, text, label) {
    const td = document.createElement("td");
    td.textContent = text;
    td.dataset.label = label;
    row.appendChild(td);
  }

  function table(report) {
    const box = document.getElementById("simulation");
    box.textContent = "";
    const days = (report.trace.end - report.trace.start) / 86400;
    const intro = document.createElement("p");
    intro.className = "muted small";
    intro.textContent = `${report.file}: ${report.trace.sessions} sessions over ${days.toFixed(1)} days; ` +
      `${report.gpu_type} at $${report.usd_per_hour.toFixed(2)}/h; first request needs ${report.needs.join(", ") || "nothing"}.`;
    box.appendChild(intro);
    const t = document.createElement("table");
    t.className = "compact responsive";
    t.id = "simulation-table";
    const head = t.createTHead().insertRow();
    HEADERS.forEach((h) => {
      const th = document.createElement("th");
      th.textContent = h;
      head.appendChild(th);
    });
    const body = t.createTBody();
    report.policies.forEach((p) => {
      const row = body.insertRow();
      const wakes = ["warm", "cool", "cold", "dormant"].map((s) => p.wakes[s] || 0).join("/");
      [p.policy, p.billed_hours.toFixed(1), "$" + p.cost_usd.toFixed(2),
        p.credit_multiplier === null ? "—" : p.credit_multiplier.toFixed(2), wakes,
        String(p.sessions_waiting), p.wait_s.p50.toFixed(1) + " s", p.wait_s.p99.toFixed(1) + " s",
        p.wait_s.max.toFixed(1) + " s"].forEach((text, i) => cell(row, text, HEADERS[i]));
    });
    box.appendChild(t);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const data = document.getElementById("daily-data");
    if (data) draw(JSON.parse(data.textContent));
    window.VO.on("update", (message) => message.daily && draw(message.daily));
    const form = document.getElementById("simulate");
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const file = form.elements.trace.files[0];
      const box = document.getElementById("simulation");
      if (!file) return;
      box.textContent = "Simulating…";
      try {
        const report = await window.VO.post("/api/simulate", {
          trace: await file.text(),
          filename: file.name,
          timeouts: form.elements.timeouts.value,
        });
        table(report);
      } catch (err) {
        box.textContent = "";
        const p = document.createElement("p");
        p.className = "error";
        p.textContent = err.message;
        box.appendChild(p);
      }
    });
  });
})();
