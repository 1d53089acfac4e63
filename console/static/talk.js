// Talk page: the browser's microphone over the console's voice socket (/talk/realtime, relayed
// to the server's /v1/realtime), the reply played back, transcripts and latencies per turn.
// Hold to talk: turn_detection null; audio is sent while the button is held, then commit and
// response.create. Hands-free: server VAD finds the turns; its speech_started stops playback.
// The capture worklet (talk-worklet.js) sends PCM16 at 24 kHz; replies are PCM16 at 24 kHz.
"use strict";

(function () {
  const RATE = 24000;
  const MIN_TURN_MS = 120;  // the server refuses a commit of less than 100 ms
  const KEEP_CHUNKS = 1500;  // send times of the last minute of audio, for hands-free latency
  const QUEUE_MAX = 1500;  // messages kept while the socket opens
  const $ = (id) => document.getElementById(id);
  const s = {
    ws: null, ctx: null, stream: null, opening: null, handsFree: false, holding: false,
    sent: 0, held: 0, chunks: [], queue: [], received: 0, played: 0, sources: new Set(),
    playAt: 0, turns: [], responding: false, error: "",
  };

  // -- what the operator sees -------------------------------------------------------------
  function setState(state, detail) {
    const badge = $("talk-state");
    badge.textContent = state;
    badge.dataset.state = state;
    if (detail !== undefined) $("talk-detail").textContent = detail;
  }
  function stats() {
    const el = $("talk-stats");
    el.dataset.sentMs = Math.round(s.sent / (RATE / 1000));
    el.dataset.receivedMs = Math.round(s.received / (RATE / 1000));
    el.dataset.played = s.played;
    el.querySelector('[data-stat="sent"]').textContent = (s.sent / RATE).toFixed(1) + " s";
    el.querySelector('[data-stat="received"]').textContent = (s.received / RATE).toFixed(1) + " s";
    el.querySelector('[data-stat="played"]').textContent = s.played;
  }
  function line(who, label) {
    const div = document.createElement("div");
    div.className = who;
    const b = document.createElement("b");
    b.textContent = label + " ";
    const span = document.createElement("span");
    div.append(b, span);
    return div;
  }
  function startTurn(mode, t0) {
    const turn = { n: s.turns.length + 1, mode, t0, item: null, response: null, latency: null };
    const list = $("talk-transcript");
    list.querySelectorAll(".empty").forEach((el) => el.remove());
    turn.li = document.createElement("li");
    turn.li.dataset.turn = turn.n;
    turn.user = line("user", "You");
    turn.bot = line("bot", "Voice");
    turn.user.lastChild.textContent = "…";
    turn.li.append(turn.user, turn.bot);
    list.appendChild(turn.li);
    const body = $("talk-latency").tBodies[0];
    body.querySelectorAll(".empty").forEach((el) => el.remove());
    turn.row = body.insertRow();
    turn.row.dataset.turn = turn.n;
    [["Turn", turn.n], ["Mode", mode], ["First audio", "…"], ["Server stages", "—"]].forEach(
      ([label, text], i) => {
        const cell = turn.row.insertCell();
        cell.dataset.label = label;
        cell.className = ["n", "mode", "latency", "stages"][i];
        cell.textContent = text;
      });
    s.turns.push(turn);
    return turn;
  }
  const find = (test) => s.turns.find(test);

  // -- the socket ---------------------------------------------------------------------------
  function send(event) {
    const text = JSON.stringify(event);
    if (s.ws && s.ws.readyState === WebSocket.OPEN) s.ws.send(text);
    else if (s.queue.length < QUEUE_MAX) s.queue.push(text);
  }
  function detection() {
    return { turn_detection: s.handsFree ? { type: "server_vad" } : null };
  }
  function open() {
    if (!s.opening) s.opening = opening().catch((err) => { end(); setState("error", err.message); throw err; });
    return s.opening;
  }
  async function opening() {
    const root = $("talk");
    s.error = "";
    s.ctx = new AudioContext();  // made in the click, so it may start
    setState("connecting", "asking for the microphone");
    s.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    await s.ctx.audioWorklet.addModule(root.dataset.worklet);
    const node = new AudioWorkletNode(s.ctx, "vo-capture");
    node.port.onmessage = (event) => captured(event.data);
    const mute = s.ctx.createGain();  // a worklet runs while something pulls it
    mute.gain.value = 0;
    s.ctx.createMediaStreamSource(s.stream).connect(node).connect(mute).connect(s.ctx.destination);
    await s.ctx.resume();
    setState("connecting", "opening the voice session");
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + root.dataset.socket, ["realtime", "vo-csrf." + csrf]);
    s.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "session.update", session: detection() }));
      s.queue.splice(0).forEach((text) => ws.send(text));
    };
    ws.onmessage = (event) => received(JSON.parse(event.data));
    ws.onclose = (event) => {
      if (s.ws !== ws) return;
      const why = s.error;  // the error event that came before the close says the most
      end();
      setState("closed", why || `session closed (${event.code}${event.reason ? ": " + event.reason : ""})`);
    };
    $("talk-end").disabled = false;
  }
  function end() {
    const ws = s.ws;
    s.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "ended in the console");
    stopPlayback();
    if (s.stream) s.stream.getTracks().forEach((track) => track.stop());
    if (s.ctx) s.ctx.close();
    Object.assign(s, { ctx: null, stream: null, opening: null, holding: false, queue: [], responding: false });
    $("talk-end").disabled = true;
    $("talk-hold").setAttribute("aria-pressed", "false");
    $("talk-level").value = 0;
    setState("idle", "");
  }

  // -- audio in -------------------------------------------------------------------------------
  function b64(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(text);
  }
  function captured({ pcm, level }) {
    $("talk-level").value = Math.min(1, level * 4);
    if (!s.handsFree && !s.holding) return;
    const samples = pcm.byteLength / 2;
    s.sent += samples;
    if (s.holding) s.held += samples;
    s.chunks.push({ end: s.sent, at: performance.now() });
    if (s.chunks.length > KEEP_CHUNKS) s.chunks.shift();
    send({ type: "input_audio_buffer.append", audio: b64(pcm) });
    stats();
  }
  function heardAt(ms) {
    // When the sample at ``ms`` of the stream the server heard was captured here.
    const target = (ms * RATE) / 1000;
    const chunk = s.chunks.find((c) => c.end >= target);
    return chunk ? chunk.at - ((chunk.end - target) * 1000) / RATE : performance.now();
  }

  // -- audio out ------------------------------------------------------------------------------
  function play(delta) {
    const raw = atob(delta);
    const pcm = new Int16Array(raw.length >> 1);
    for (let i = 0; i < pcm.length; i++) {
      pcm[i] = raw.charCodeAt(2 * i) | (raw.charCodeAt(2 * i + 1) << 8);
    }
    s.received += pcm.length;
    stats();
    if (!s.ctx || !pcm.length) return;
    const buffer = s.ctx.createBuffer(1, pcm.length, RATE);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
    const node = s.ctx.createBufferSource();
    node.buffer = buffer;
    node.connect(s.ctx.destination);
    const at = Math.max(s.ctx.currentTime + 0.05, s.playAt);
    node.start(at);
    s.playAt = at + buffer.duration;
    s.sources.add(node);
    node.onended = () => {
      if (s.sources.delete(node)) s.played += 1;  // a stopped one was deleted before
      stats();
      if (!s.sources.size && !s.responding && s.ws) setState("ready");
    };
  }
  function stopPlayback() {
    const playing = [...s.sources];
    s.sources.clear();
    playing.forEach((node) => node.stop());
    s.playAt = 0;
    return playing.length > 0;
  }

  // -- server events --------------------------------------------------------------------------
  function received(e) {
    switch (e.type) {
      case "session.created":
        s.error = "";
        setState("ready", s.handsFree ? "listening: speak" : "hold the button and speak");
        break;
      case "waking":
        setState("waking", "loading " + e.engines.join(", "));
        break;
      case "input_audio_buffer.speech_started":
        if (stopPlayback()) $("talk-detail").textContent = "barge-in: playback stopped";
        setState("listening");
        break;
      case "input_audio_buffer.speech_stopped":
        startTurn("hands-free", heardAt(e.audio_end_ms));
        setState("thinking");
        break;
      case "input_audio_buffer.committed": {
        const turn = find((t) => !t.item);
        if (turn) turn.item = e.item_id;
        break;
      }
      case "conversation.item.input_audio_transcription.completed": {
        const turn = find((t) => t.item === e.item_id);
        if (turn) turn.user.lastChild.textContent = e.transcript || "(nothing heard)";
        break;
      }
      case "response.created": {
        s.responding = true;
        const turn = find((t) => !t.response) || startTurn("typed", performance.now());
        turn.response = e.response.id;
        break;
      }
      case "response.audio_transcript.delta": {
        const turn = find((t) => t.response === e.response_id);
        if (turn) turn.bot.lastChild.textContent += e.delta;
        break;
      }
      case "response.audio.delta": {
        const turn = find((t) => t.response === e.response_id);
        if (turn && turn.latency === null) {
          turn.latency = performance.now() - turn.t0;
          const cell = turn.row.querySelector(".latency");
          cell.textContent = Math.round(turn.latency) + " ms";
          cell.dataset.ms = Math.round(turn.latency);
          setState("speaking");
        }
        play(e.delta);
        break;
      }
      case "response.done":
        s.responding = false;
        s.error = "";
        if (!s.sources.size) setState("ready");
        if (e.response.status !== "completed") $("talk-detail").textContent = "reply " + e.response.status;
        break;
      case "console.turn_timings": {
        const turn = find((t) => t.response === e.response_id);
        if (!turn) break;
        const ms = (key) => Math.round(1000 * e[key]) + " ms";
        turn.row.querySelector(".stages").textContent =
          `transcript ${ms("transcript_s")} · first token ${ms("first_token_s")} · ` +
          `TTS first byte ${ms("tts_first_byte_s")} · first audio ${ms("first_audio_s")}`;
        break;
      }
      case "error":
        s.error = e.error.message;
        $("talk-detail").textContent = e.error.message;
        if (window.VO) VO.toast(e.error.message, "error");
        break;
    }
  }

  // -- controls -------------------------------------------------------------------------------
  async function press() {
    if (s.handsFree || s.holding) return;
    s.holding = true;
    s.held = 0;
    $("talk-hold").setAttribute("aria-pressed", "true");
    stopPlayback();  // barge-in: the operator speaks over the reply
    if (s.responding) send({ type: "response.cancel" });
    s.responding = false;
    try { await open(); } catch (err) { return; }
    if (s.holding) setState("listening", "release to send");
  }
  function release() {
    if (!s.holding) return;
    s.holding = false;
    $("talk-hold").setAttribute("aria-pressed", "false");
    if ((s.held * 1000) / RATE < MIN_TURN_MS) {
      send({ type: "input_audio_buffer.clear" });
      if (s.ws) setState("ready", "hold the button a little longer while you speak");
      return;
    }
    send({ type: "input_audio_buffer.commit" });
    send({ type: "response.create" });
    startTurn("hold", performance.now());
    setState("thinking", "");
  }
  async function toggleHandsFree() {
    s.handsFree = !s.handsFree;
    const button = $("talk-handsfree");
    button.setAttribute("aria-pressed", String(s.handsFree));
    button.textContent = "Hands-free: " + (s.handsFree ? "on" : "off");
    $("talk-hold").disabled = s.handsFree;
    if (!s.handsFree) send({ type: "input_audio_buffer.clear" });
    if (s.ws || s.opening) send({ type: "session.update", session: detection() });
    try { await open(); } catch (err) { return; }
    setState("ready", s.handsFree ? "listening: speak" : "hold the button and speak");
  }

  document.addEventListener("DOMContentLoaded", () => {
    const hold = $("talk-hold");
    if (!hold) return;
    hold.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      hold.setPointerCapture(event.pointerId);
      press();
    });
    ["pointerup", "pointercancel", "lostpointercapture"].forEach((kind) => hold.addEventListener(kind, release));
    hold.addEventListener("keydown", (event) => {
      if ((event.key === " " || event.key === "Enter") && !event.repeat) { event.preventDefault(); press(); }
    });
    hold.addEventListener("keyup", (event) => {
      if (event.key === " " || event.key === "Enter") release();
    });
    $("talk-handsfree").addEventListener("click", toggleHandsFree);
    $("talk-end").addEventListener("click", end);
    window.addEventListener("pagehide", end);
    stats();
  });
})();
