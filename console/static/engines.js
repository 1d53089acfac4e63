// Engines page: follow the output of managed engine processes over one event stream.
// Lines that came with the page carry data-seq; the stream's backlog repeats some of them, so
// a line is added only when its sequence number is past the last one shown.
"use strict";

(function () {
  const KEEP = 400;  // lines kept per process in the page

  function panel(engine) {
    return document.querySelector(`details.log[data-log="${CSS.escape(engine)}"]`);
  }

  function lastSeq(pre) {
    const last = pre.querySelector("[data-seq]:last-of-type");
    return last ? parseInt(last.dataset.seq, 10) : 0;
  }

  function append(line) {
    const details = panel(line.engine);
    if (!details) return;
    const pre = details.querySelector("pre");
    if (line.seq && line.seq <= lastSeq(pre)) return;
    pre.querySelectorAll("[data-empty]").forEach((el) => el.remove());
    const follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const span = document.createElement("span");
    span.className = "line " + line.stream;
    span.dataset.seq = line.seq;
    span.textContent = line.text + "\n";
    pre.appendChild(span);
    while (pre.children.length > KEEP) pre.firstElementChild.remove();
    if (follow) pre.scrollTop = pre.scrollHeight;
    const count = details.querySelector("[data-log-count]");
    if (count) count.textContent = "following";
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (!document.querySelector("details.log")) return;
    document.querySelectorAll("details.log pre").forEach((pre) => (pre.scrollTop = pre.scrollHeight));
    const source = new EventSource("/events/logs");
    source.addEventListener("line", (event) => append(JSON.parse(event.data)));
  });
})();
