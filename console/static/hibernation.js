// Hibernation page: send the thresholds and per-state actions form as JSON for validation.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("settings");
  const result = document.getElementById("settings-result");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { actions: {} };
    form.querySelectorAll(".thresholds input").forEach((input) => {
      body[input.name] = parseFloat(input.value);
    });
    form.querySelectorAll("tr[data-state]").forEach((row) => {
      body.actions[row.dataset.state] = {
        unload_roles: [...row.querySelectorAll('input[name="unload_roles"]:checked')].map((i) => i.value),
        park_roles: [...row.querySelectorAll('input[name="park_roles"]:checked')].map((i) => i.value),
        stop_processes: row.querySelector('input[name="stop_processes"]').checked,
        host_power_off: row.querySelector('input[name="host_power_off"]').checked,
        telemetry_interval_s: parseFloat(row.querySelector('input[name="telemetry_interval_s"]').value),
      };
    });
    result.className = "";
    result.textContent = "Checking…";
    try {
      const saved = await window.VO.post("/api/hibernation/settings", body);
      result.className = "notice";
      result.textContent = `Saved to ${saved.saved}. Takes effect on restart: ${saved.restart}`;
    } catch (err) {
      result.className = "error";
      result.textContent = err.message;
    }
  });
});
