// voice-orchestrator console: live fragments over server-sent events, and operator actions.
// No framework: the server renders every fragment; this file swaps them in, ticks clocks,
// and posts actions as JSON with the page's CSRF token.
"use strict";

(function () {
  const VO = (window.VO = { offset: 0, handlers: { update: [], bus: [], history: [] } });
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  // -- time: server clock offset, relative times, countdowns ---------------------------------
  VO.serverNow = () => Date.now() / 1000 + VO.offset;
  VO.duration = function (s) {
    s = Math.max(0, s);
    if (s < 60) return Math.floor(s) + " s";
    const m = s / 60;
    if (m < 60) return Math.floor(m) + " min";
    const h = Math.floor(m / 60), rest = Math.round(m % 60);
    if (h < 48) return rest ? `${h} h ${rest} min` : `${h} h`;
    const d = Math.floor(h / 24);
    return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
  };
  function localize(root) {
    root.querySelectorAll("time[data-ts]").forEach((el) => {
      const when = new Date(parseFloat(el.dataset.ts) * 1000);
      el.title = el.textContent;
      el.textContent = "date" in el.dataset ? when.toLocaleDateString() : when.toLocaleString();
    });
  }
  function tick() {
    const now = VO.serverNow();
    document.querySelectorAll("[data-since]").forEach((el) => {
      el.textContent = VO.duration(now - parseFloat(el.dataset.since));
    });
    document.querySelectorAll("[data-until]").forEach((el) => {
      const left = parseFloat(el.dataset.until) - now;
      el.textContent = left > 0 ? VO.duration(left) : "moments";
    });
  }

  // -- messages to the operator ---------------------------------------------------------------
  VO.toast = function (text, kind) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const item = document.createElement("div");
    item.className = "toast " + (kind || "info");
    item.textContent = text;
    box.appendChild(item);
    setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
  };

  // -- actions: POST JSON with the CSRF token -------------------------------------------------
  VO.post = async function (path, body) {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body || {}),
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (response.status === 401) window.location = "/login?next=" + encodeURIComponent(location.pathname);
    if (!response.ok) {
      const problems = data && data.problems ? ": " + data.problems.join("; ") : "";
      throw new Error(((data && data.error) || response.statusText) + problems);
    }
    return data;
  };
  async function act(el, body) {
    if (el.dataset.confirm && !window.confirm(el.dataset.confirm)) return;
    const buttons = el.tagName === "FORM" ? el.querySelectorAll("button") : [el];
    buttons.forEach((b) => (b.disabled = true));
    try {
      await VO.post(el.dataset.post, body);
      VO.toast(el.dataset.done || "Done: " + el.dataset.post.split("/").slice(-2).join(" "), "ok");
    } catch (err) {
      VO.toast(err.message, "error");
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  }
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-post]");
    if (!button) return;
    event.preventDefault();
    act(button, JSON.parse(button.dataset.body || "{}"));
  });
  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-post]");
    if (!form) return;
    event.preventDefault();
    act(form, Object.fromEntries(new FormData(form).entries()));
  });

  // -- live updates -----------------------------------------------------------------------------
  function swap(name, html) {
    const target = document.querySelector(`[data-fragment="${name}"]`);
    // Never replace a field the operator is typing in; a clicked button keeps the focus too,
    // but its fragment must still follow the state it changed.
    const active = document.activeElement;
    const editing = active && active.matches("input, select, textarea, [contenteditable]");
    if (!target || (editing && target.contains(active))) return;
    target.innerHTML = html;
    localize(target);
  }
  function setLive(text, ok) {
    const el = document.getElementById("live");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("on", ok);
  }
  VO.on = (kind, fn) => VO.handlers[kind].push(fn);
  function connect() {
    const view = document.body.dataset.view;
    const source = new EventSource("/events?view=" + encodeURIComponent(view));
    source.addEventListener("open", () => setLive("live", true));
    source.addEventListener("update", (event) => {
      const message = JSON.parse(event.data);
      VO.offset = message.now - Date.now() / 1000;
      Object.entries(message.fragments).forEach(([name, html]) => swap(name, html));
      document.body.dataset.state = message.state;
      VO.handlers.update.forEach((fn) => fn(message));
      tick();
    });
    source.addEventListener("bus", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "hibernation.transition") {
        VO.toast(`${message.data.source} → ${message.data.target}: ${message.data.cause}`, "info");
      } else if (message.type === "engine.state" && message.data.state === "failed") {
        VO.toast(`${message.data.engine} failed`, "error");
      }
      VO.handlers.bus.forEach((fn) => fn(message));
    });
    source.addEventListener("history", (event) => {
      const point = JSON.parse(event.data);
      VO.handlers.history.forEach((fn) => fn(point));
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        setLive("offline: reload to sign in again", false);
      } else {
        setLive("reconnecting…", false);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    localize(document);
    connect();
    setInterval(tick, 1000);
  });
})();
