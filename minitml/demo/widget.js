// The front end of minitml's live duplex demo (an anywidget ES module).
//
// The browser owns the clock. An AudioWorklet cuts whatever it hears into 200 ms
// chunks at 16 kHz and posts each one to this page; the page sends it to the kernel
// as a binary buffer; the kernel runs one Session.step and replies with the model's
// next 200 ms, which is scheduled on the same audio clock, gaplessly, behind a
// small jitter buffer. In scripted mode the worklet hears nothing and still ticks
// every 200 ms: the kernel takes the scenario's next chunk instead, and sends that
// back too, so the page plays both voices (user on the left, model on the right).
// The protocol is described in minitml/demo/engine.py.

const WORKLET = `
class ChunkRecorder extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions;
    this.size = o.chunkSamples;               // samples per chunk at the target rate
    this.ratio = sampleRate / o.targetRate;   // input samples per output sample
    this.chunk = new Float32Array(this.size);
    this.n = 0; this.sum = 0; this.count = 0; this.phase = 0;
  }
  process(inputs) {
    const channels = inputs[0];
    const x = channels && channels.length ? channels[0] : null;  // no input: silence, still ticking
    const frames = x ? x.length : 128;
    for (let i = 0; i < frames; i++) {
      // resample by averaging each output sample's span of input samples (a box low-pass)
      this.sum += x ? x[i] : 0; this.count += 1; this.phase += 1;
      if (this.phase >= this.ratio) {
        this.phase -= this.ratio;
        this.chunk[this.n++] = this.sum / this.count;
        this.sum = 0; this.count = 0;
        if (this.n === this.size) {
          this.port.postMessage(this.chunk, [this.chunk.buffer]);
          this.chunk = new Float32Array(this.size); this.n = 0;
        }
      }
    }
    return true;
  }
}
registerProcessor("minitml-chunk-recorder", ChunkRecorder);
`;

const LEAD_S = 0.15; // jitter buffer: how far ahead of "now" the first reply is scheduled
const MARGIN_S = 0.02; // a reply with less time than this before its slot re-anchors the clock
const VIEW_S = 12; // seconds of conversation the timeline shows
const MAX_IN_FLIGHT = 10; // chunks (2 s) sent but not answered before new chunks are dropped, not queued
const COLOURS = {
  took_turn: "#2ca02c", backchannel: "#9467bd", yielded: "#d62728", background_call: "#222",
  background_result: "#17becf", background_error: "#d62728", deadline_miss: "#b00020",
  catch_up: "#888", error: "#b00020", you_said: "#1f77b4", light: "#e6a700",
  answer_right: "#2ca02c", answer_wrong: "#d62728", // the end of a scripted run: each reply checked
};

function make(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

function floats(view) {
  // DataView / ArrayBuffer -> a Float32Array copy (copying also fixes the alignment)
  const buf = view instanceof ArrayBuffer ? view : view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength);
  return new Float32Array(buf);
}

function bytes(view) {
  return view instanceof ArrayBuffer ? new Uint8Array(view) : new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

function median(xs) {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function render({ model, el }) {
  const SR = model.get("sample_rate");
  const N = model.get("chunk_samples");
  const STEP_MS = model.get("micro_turn_ms"); // one micro-turn, the preset's (config.AudioConfig)
  const STEP_S = STEP_MS / 1000;
  const [FH, FW] = model.get("frame_size");
  el.classList.add("minitml-demo");

  // -- the controls ------------------------------------------------------------------
  const mode = make("select", { class: "mode" },
    make("option", { value: "scripted", textContent: "scripted (no microphone)" }),
    make("option", { value: "microphone", textContent: "microphone" }));
  const kind = make("select", { class: "kind" },
    ...model.get("kinds").map((k) => make("option", { value: k, textContent: k })));
  kind.value = model.get("kind");
  const seed = make("input", { class: "seed", type: "number", value: "0", min: "0", title: "scenario seed" });
  const webcam = make("input", { type: "checkbox", class: "webcam" });
  const start = make("button", { class: "start", textContent: "start" });
  const stop = make("button", { class: "stop", textContent: "stop", disabled: true });
  const interrupt = make("button", { class: "action", "data-action": "interrupt", textContent: "interrupt", disabled: true,
    title: "the user barges in: 'wait, what colour is the light'" });
  const light = make("button", { class: "action", "data-action": "light", textContent: "change the light", disabled: true });
  const timer = make("button", { class: "action", "data-action": "timer", textContent: "start a timer", disabled: true,
    title: "the user asks: 'tell me when five seconds have passed'" });
  const say = make("input", { class: "say", type: "text", placeholder: "type what the user says, then Enter", disabled: true });
  const scriptedOnly = make("span", {}, " kind ", kind, " seed ", seed);
  const micOnly = make("label", { class: "hidden" }, webcam, " webcam");
  const canvas = make("canvas", { class: "timeline", width: 960, height: 212 });
  const seen = make("canvas", { class: "frame", width: FW, height: FH, title: "the frame the model sees" });
  const stats = make("div", { class: "stats", textContent: `ready · model on ${model.get("device")} (${model.get("checkpoint")})` });
  const message = make("div", { class: "message" });
  const transcript = make("div", { class: "transcript" });
  el.append(
    make("div", { class: "row" }, "mode ", mode, scriptedOnly, micOnly, start, stop),
    make("div", { class: "row" }, interrupt, light, timer, say),
    make("div", { class: "row view" }, canvas, make("div", { class: "side" }, seen, make("div", { class: "caption", textContent: "what the model sees" }))),
    stats, message, transcript);
  mode.onchange = () => {
    scriptedOnly.classList.toggle("hidden", mode.value !== "scripted");
    micOnly.classList.toggle("hidden", mode.value !== "microphone");
  };

  // -- state of one conversation -------------------------------------------------------
  let ctx = null; // one AudioContext, made on the first click (browsers start audio only on a gesture)
  let userOut = null, modelOut = null;
  let run = null;

  function fresh(m) {
    return {
      mode: m, state: "starting", budget: STEP_MS, late: 0, turns: 0, clock0: null,
      sent: 0, received: 0, scheduled: 0, userScheduled: 0, framesSent: 0, dropped: 0, errors: 0, glitches: 0,
      compute: [], roundTrip: [], sentAt: new Map(), rows: [], events: [], // for the readout and the timeline
      node: null, source: null, stream: null, video: null, grab: null, mute: null, // audio graph and devices
    };
  }

  function show(text, isError = false) {
    message.textContent = text;
    message.classList.toggle("error", isError);
  }

  function readout() {
    const r = run;
    if (!r) return;
    const p50 = median(r.compute), max = r.compute.length ? Math.max(...r.compute) : 0;
    const last = r.compute.length ? r.compute[r.compute.length - 1] : 0;
    stats.textContent = `${r.state} · ${r.mode} · micro-turns stepped by the kernel: ${r.turns} · ` +
      `compute ${last.toFixed(1)} ms of the ${r.budget} ms budget (median ${p50.toFixed(1)}, max ${max.toFixed(1)}) · ` +
      `late ${r.late.toFixed(0)} ms · round trip ${median(r.roundTrip).toFixed(0)} ms · ` +
      `sent ${r.sent}, answered ${r.received}, audio scheduled ${r.scheduled}` +
      (r.dropped ? `, dropped ${r.dropped}` : "") + (r.glitches ? `, playback gaps ${r.glitches}` : "") +
      ` · errors ${r.errors} · ${model.get("device")}`;
    // the same numbers as data-* attributes on the widget (tests/test_browser.py reads them)
    const d = { state: r.state, mode: r.mode, turns: r.turns, sent: r.sent, received: r.received,
      scheduled: r.scheduled, "user-scheduled": r.userScheduled, "frames-sent": r.framesSent, errors: r.errors,
      glitches: r.glitches, dropped: r.dropped,
      "compute-p50": p50.toFixed(2), "compute-max": max.toFixed(2), "round-trip-p50": median(r.roundTrip).toFixed(1),
      "kernel-turns": model.get("turns"), "audio-state": ctx ? ctx.state : "none",
      "audio-time": ctx ? ctx.currentTime.toFixed(2) : "0" };
    for (const [k, v] of Object.entries(d)) el.setAttribute(`data-${k}`, String(v));
  }

  // -- the timeline --------------------------------------------------------------------
  function draw() {
    const g = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height;
    g.clearRect(0, 0, W, H);
    g.fillStyle = "#fafafa"; g.fillRect(0, 0, W, H);
    if (!run) return;
    const end = Math.max(VIEW_S, (run.turns + 1) * STEP_S);
    const t0 = end - VIEW_S;
    const x = (t) => 60 + ((t - t0) / VIEW_S) * (W - 70);
    const bands = { user: [40, 60, "#1f77b4"], model: [120, 60, "#ff7f0e"] };
    g.font = "11px sans-serif";
    for (const [name, [top, h, colour]] of Object.entries(bands)) {
      g.fillStyle = "#444"; g.fillText(name, 8, top + h / 2);
      g.strokeStyle = "#ddd"; g.beginPath(); g.moveTo(60, top + h / 2); g.lineTo(W - 10, top + h / 2); g.stroke();
      g.fillStyle = colour;
      for (const row of run.rows) {
        const levels = name === "user" ? row.user_levels : row.model_levels;
        const first = name === "user" ? row.turn * STEP_S : (row.turn + 1) * STEP_S;
        levels.forEach((db, j) => {
          const t = first + (j * STEP_S) / levels.length;
          if (t < t0) return;
          const a = Math.max(0, Math.min(1, (db + 50) / 45)) * (h / 2); // -50 dBFS (room noise) to -5
          g.fillRect(x(t), top + h / 2 - a, Math.max(1, (W - 70) / (VIEW_S * 20) - 1), 2 * a);
        });
      }
    }
    g.font = "10px sans-serif";
    const free = { user: 0, model: 0 }; // where the last word drawn on each line ends: no overlaps
    const word = (line, w, t, y) => {
      if (t < t0 || x(t) < free[line]) return;
      g.fillText(w, x(t), y);
      free[line] = x(t) + g.measureText(w).width + 3;
    };
    for (const row of run.rows) {
      g.fillStyle = "#1f77b4";
      for (const [w, t] of row.user_words) word("user", w, t, 112);
      g.fillStyle = "#b35900";
      for (const [w, t] of row.words) word("model", w, t, 192);
    }
    for (const e of run.events) {
      if (e.time < t0 || !(e.kind in COLOURS)) continue;
      g.strokeStyle = g.fillStyle = COLOURS[e.kind];
      g.setLineDash([3, 3]); g.beginPath(); g.moveTo(x(e.time), 16); g.lineTo(x(e.time), 182); g.stroke(); g.setLineDash([]);
      const label = e.kind.replace("_", " ") + (e.detail ? `: ${e.detail}` : "");
      g.fillText(label.length > 40 ? label.slice(0, 39) + "…" : label, x(e.time) + 2, 12 + (run.events.indexOf(e) % 2) * 12);
    }
    g.fillStyle = "#888";
    for (let s = Math.ceil(t0); s <= end; s++) g.fillText(`${s} s`, x(s), H - 3);
  }

  function showFrame(buffer, h, w) {
    const rgb = bytes(buffer);
    const image = new ImageData(w, h);
    for (let i = 0; i < w * h; i++) {
      image.data[4 * i] = rgb[3 * i]; image.data[4 * i + 1] = rgb[3 * i + 1];
      image.data[4 * i + 2] = rgb[3 * i + 2]; image.data[4 * i + 3] = 255;
    }
    seen.width = w; seen.height = h;
    seen.getContext("2d").putImageData(image, 0, 0);
  }

  // -- playback: every reply on the audio clock, behind a small jitter buffer --------------------
  function play(samples, at, out) {
    const buffer = ctx.createBuffer(1, samples.length, SR); // the browser resamples 16 kHz to its own rate
    buffer.copyToChannel(samples, 0);
    const src = ctx.createBufferSource();
    src.buffer = buffer;
    src.connect(out);
    src.start(at);
  }

  function schedule(msg, buffers) {
    const t = msg.turn, now = ctx.currentTime;
    const i = (name) => msg.buffers.indexOf(name);
    // Output t is played during [200(t+1), 200(t+2)) ms of the conversation, the user's chunk t during
    // [200t, 200(t+1)); clock0 maps that clock onto the audio clock. The first reply sets it so that its
    // first slot (the user's chunk in scripted mode, else the model's audio) starts LEAD_S from now; a
    // reply too late for that slot re-anchors it: an audible gap. (engine.playout_schedule is this rule.)
    const first = run.mode === "scripted" ? 0 : 1;
    if (run.clock0 === null || run.clock0 + STEP_S * (t + first) < now + MARGIN_S) {
      if (run.clock0 !== null) run.glitches += 1;
      run.clock0 = now + LEAD_S - STEP_S * (t + first);
    }
    if (i("user") >= 0) { // scripted mode, or a button's speech in microphone mode (played as soon as it can)
      play(floats(buffers[i("user")]), Math.max(now + MARGIN_S, run.clock0 + STEP_S * t), userOut);
      run.userScheduled += 1;
    }
    play(floats(buffers[i("model")]), run.clock0 + STEP_S * (t + 1), modelOut);
    run.scheduled += 1;
    if (i("frame") >= 0) showFrame(buffers[i("frame")], msg.frame_size[0], msg.frame_size[1]);
  }

  function onMessage(msg, buffers) {
    if (!run) return;
    if (msg.type === "started") {
      run.state = "running";
      run.budget = msg.budget_ms;
      transcript.textContent = msg.transcript.length
        ? "script: " + msg.transcript.map(([who, a, b, text]) => `${a.toFixed(1)} s ${who}: ${text}`).join(" · ")
        : "";
      show(msg.mode === "microphone" ? "listening: speak, pause, interrupt it (headphones stop it hearing itself)" :
        `playing ${msg.kind} (seed ${msg.seed}, ${msg.n_turns} micro-turns) in real time`);
    } else if (msg.type === "output") {
      run.received += 1;
      if (run.sentAt.has(msg.seq)) {
        run.roundTrip.push(performance.now() - run.sentAt.get(msg.seq));
        run.sentAt.delete(msg.seq);
        if (run.roundTrip.length > 300) run.roundTrip.shift();
      }
      run.turns = msg.turn + 1;
      run.compute.push(msg.compute_ms);
      if (run.compute.length > 3000) run.compute.shift();
      run.late = msg.late_ms;
      run.rows.push(msg);
      if (run.rows.length > VIEW_S * 10) run.rows.shift();
      run.events.push(...msg.events);
      if (run.events.length > 200) run.events.splice(0, run.events.length - 200);
      schedule(msg, buffers);
      if (msg.done) finish("done");
    } else if (msg.type === "done") { // the answer to a chunk sent after the scenario's end
      run.received += 1;
      run.sentAt.delete(msg.seq);
      finish("done");
    } else if (msg.type === "error") {
      run.errors += 1;
      show(`kernel: ${msg.message}`, true);
    } else if (msg.type === "event") { // a button's effect; it enters the timeline with the next output
      show(msg.event.kind === "you_said" ? `the user says: "${msg.event.detail}"` : `${msg.event.kind}: ${msg.event.detail}`);
    }
    readout();
    draw();
  }
  model.on("msg:custom", onMessage);
  const onTurns = () => readout(); // the kernel's own count of the micro-turns it stepped (a synced trait)
  model.on("change:turns", onTurns);

  // -- sending chunks -------------------------------------------------------------------
  function grabFrame() {
    // the webcam picture, centre-cropped to the preset's aspect and scaled to its size
    const v = run.video, g = run.grab.getContext("2d", { willReadFrequently: true });
    const vw = v.videoWidth, vh = v.videoHeight;
    if (!vw || !vh) return null;
    const scale = Math.min(vw / FW, vh / FH);
    g.drawImage(v, (vw - FW * scale) / 2, (vh - FH * scale) / 2, FW * scale, FH * scale, 0, 0, FW, FH);
    const rgba = g.getImageData(0, 0, FW, FH).data;
    const rgb = new Uint8Array(FW * FH * 3);
    for (let i = 0; i < FW * FH; i++) {
      rgb[3 * i] = rgba[4 * i]; rgb[3 * i + 1] = rgba[4 * i + 1]; rgb[3 * i + 2] = rgba[4 * i + 2];
    }
    return rgb.buffer;
  }

  function send(chunk) {
    if (!run || run.state !== "running") return;
    if (run.sent - run.received >= MAX_IN_FLIGHT) { run.dropped += 1; readout(); return; }
    const content = { type: "chunk", seq: run.sent, dtype: "float32" };
    const buffers = [];
    if (run.mode === "microphone") {
      buffers.push(chunk.buffer);
      if (run.video) {
        const frame = grabFrame();
        if (frame) { content.frame = [FH, FW]; buffers.push(frame); run.framesSent += 1; }
      }
    }
    run.sentAt.set(run.sent, performance.now());
    model.send(content, undefined, buffers);
    run.sent += 1;
    readout();
  }

  // -- start and stop --------------------------------------------------------------------
  async function begin() {
    const m = mode.value;
    if (run && run.state === "running") return;
    run = fresh(m);
    start.disabled = true;
    show("starting...");
    try {
      if (!ctx) {
        ctx = new AudioContext();
        const url = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
        await ctx.audioWorklet.addModule(url);
        userOut = new StereoPannerNode(ctx, { pan: -0.7 });
        modelOut = new StereoPannerNode(ctx, { pan: 0.7 });
        userOut.connect(ctx.destination);
        modelOut.connect(ctx.destination);
      }
      await ctx.resume();
      if (m === "microphone") {
        if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
          throw new Error(`the microphone is only offered to secure pages (https, or http://localhost); this page is ${location.origin}. ` +
            "Use scripted mode, or open the lab through localhost (an SSH tunnel works).");
        }
        run.stream = await navigator.mediaDevices.getUserMedia({
          audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false },
          video: webcam.checked ? { width: 320, height: 240 } : false,
        });
        if (webcam.checked) {
          run.video = make("video", { muted: true, playsInline: true });
          run.video.srcObject = run.stream;
          await run.video.play();
          run.grab = make("canvas", { width: FW, height: FH });
        }
        run.source = ctx.createMediaStreamSource(run.stream);
      }
      run.node = new AudioWorkletNode(ctx, "minitml-chunk-recorder", {
        numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
        processorOptions: { chunkSamples: N, targetRate: SR },
      });
      run.node.port.onmessage = (e) => send(e.data);
      if (run.source) run.source.connect(run.node);
      const mute = new GainNode(ctx, { gain: 0 }); // keeps the worklet pulled by the graph, silently
      run.node.connect(mute).connect(ctx.destination);
      run.mute = mute;
      run.state = "running";
      model.send({ type: "start", mode: m, kind: kind.value, seed: Number(seed.value) || 0 });
      for (const b of [stop, interrupt, light, timer, say]) b.disabled = false;
    } catch (err) {
      run.state = "error";
      show(`could not start: ${err.message || err}`, true);
      start.disabled = false;
      release();
    }
    readout();
    draw();
  }

  function release() {
    if (!run) return;
    if (run.node) { run.node.port.onmessage = null; run.node.disconnect(); }
    if (run.source) run.source.disconnect();
    if (run.mute) run.mute.disconnect();
    if (run.stream) run.stream.getTracks().forEach((tr) => tr.stop());
    run.node = run.source = run.stream = run.mute = null;
  }

  function finish(state) {
    if (!run || run.state !== "running") return;
    run.state = state;
    release();
    model.send({ type: "stop" });
    for (const b of [stop, interrupt, light, timer, say]) b.disabled = true;
    start.disabled = false;
    if (state === "done") show("the scenario is over: press start to play it (or another) again");
    readout();
  }

  start.onclick = begin;
  stop.onclick = () => finish("stopped");
  for (const b of [interrupt, light, timer]) {
    b.onclick = () => model.send({ type: "action", name: b.getAttribute("data-action") });
  }
  say.onkeydown = (e) => {
    if (e.key === "Enter" && say.value.trim()) {
      model.send({ type: "say", text: say.value.trim() });
      say.value = "";
    }
  };
  mode.onchange();
  draw();
  return () => {
    finish("stopped");
    model.off("msg:custom", onMessage);
    model.off("change:turns", onTurns);
  };
}

export default { render };
