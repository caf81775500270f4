// qwen-dub review studio: the page over one job folder. Plain JavaScript, no build step, no network
// beyond this studio's own JSON API and media (see studio/server.py).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  data: null, // GET /api/lines
  voices: [],
  zoom: 20, // pixels per second
  track: null, // "original" or a language code
  version: Date.now(), // cache-buster for media after a re-dub
  range: null, // {start, end} of the line being played
  tableLang: null,
  waveform: null, // {rate, peaks: Uint8Array}
  polling: null,
  redubbing: false,
};
const STATE_LABELS = {
  fine: "fine", sped: "sped up", cut: "cut at the end", shortened: "shortened",
  unkept: "numbers or names lost", asr: "ASR check failed", edited: "edited", approved: "approved",
};

// -- talking to the server ---------------------------------------------------------------------------

async function api(path, options = {}) {
  const init = { method: options.method || "GET", headers: {} };
  if (options.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.headers["X-Studio"] = "1"; // the server accepts changes only with it (no cross-site forms)
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const error = new Error((data && data.error) || `request failed (HTTP ${response.status})`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function say(message) { $("status").textContent = message; }
function showAlert(message) {
  const box = $("alert");
  box.textContent = message || "";
  box.hidden = !message;
}
function seconds(t) { return t == null ? "" : Number(t).toFixed(2); }
function languageName(code) {
  if (code === "original") return "Original";
  const lang = state.data && state.data.languages[code];
  return lang ? lang.name : code;
}
function lineByIndex(index) { return state.data.lines.find((l) => l.index === index); }
function rowOf(lang, index) { return state.data.languages[lang].lines.find((r) => r.index === index); }

// -- start -------------------------------------------------------------------------------------------

async function start() {
  const t0 = performance.now();
  let status;
  try {
    status = await api("/api/status");
  } catch (error) {
    showAlert(error.message);
    document.body.dataset.ready = "error";
    return;
  }
  $("job-name").textContent = status.job.name;
  document.title = `${status.job.name} - Review studio`;
  try {
    const [data, voices] = await Promise.all([api("/api/lines"), api("/api/voices").catch(() => [])]);
    state.data = data;
    state.voices = voices;
  } catch (error) {
    showAlert(error.message);
    document.body.dataset.ready = "error";
    return;
  }
  applyStatus(status);
  buildTracks();
  buildLanguagePicker();
  $("studio").hidden = false;
  renderTimeline();
  renderSpeakers();
  renderTable();
  await setTrack(state.data.job.languages[0] || "original", false);
  bindControls();
  loadWaveform();
  const n = Object.keys(state.data.languages).length;
  say(`${state.data.lines.length} lines in ${n} language${n === 1 ? "" : "s"}.`);
  document.body.dataset.loadMs = String(Math.round(performance.now() - t0));
  document.body.dataset.ready = "1";
  state.polling = setInterval(poll, 3000);
}

function applyStatus(status) {
  const locked = status.job.locked;
  const run = status.redub || {};
  if (locked && run.state !== "running") {
    showAlert(`Locked: ${locked}. Edits are refused until it ends.`);
  } else if ($("alert").dataset.kind === "lock") {
    showAlert("");
  }
  $("alert").dataset.kind = locked && run.state !== "running" ? "lock" : "";
  $("redub").disabled = !status.job.can_redub || run.state === "running" || !$("redub").dataset.estimated;
  if (!status.job.can_redub) {
    $("estimate").disabled = true;
    $("estimate-result").textContent =
      "This job has no recorded options (work/config.json): run it once more from the command line to re-dub here.";
  }
  showRedub(run);
}

async function poll() {
  try {
    const status = await api("/api/status");
    applyStatus(status);
    if (state.redubbing && status.redub.state !== "running") {
      state.redubbing = false;
      clearInterval(state.polling);
      state.polling = setInterval(poll, 3000);
      if (status.redub.state === "completed") await reload("Re-dub finished: timeline and video reloaded.");
      else showAlert(`Re-dub failed: ${status.redub.message}`);
    }
  } catch (error) {
    showAlert(error.message);
  }
}

async function reload(message) {
  state.data = await api("/api/lines");
  state.version = Date.now();
  renderTimeline();
  renderTable();
  const track = state.track;
  state.track = null;
  await setTrack(track, true);
  say(message);
}

// -- the player --------------------------------------------------------------------------------------

function buildTracks() {
  const box = $("tracks");
  for (const code of ["original", ...state.data.job.languages]) {
    const label = document.createElement("label");
    const radio = document.createElement("input");
    radio.type = "radio";
    radio.name = "track";
    radio.value = code;
    radio.addEventListener("change", () => setTrack(code, true));
    label.append(radio, ` ${code === "original" ? "Original" : `${languageName(code)} (dub)`}`);
    box.append(label);
  }
}

function setTrack(track, keepTime) {
  const player = $("player");
  for (const radio of document.querySelectorAll("input[name=track]")) radio.checked = radio.value === track;
  if (!state.data.job.video) {
    player.hidden = true;
    $("no-video").hidden = false;
    state.track = track;
    return Promise.resolve();
  }
  if (state.track === track && player.currentSrc) return Promise.resolve();
  const time = keepTime ? player.currentTime : 0;
  const wasPlaying = keepTime && !player.paused;
  state.track = track;
  for (const old of player.querySelectorAll("track")) old.remove();
  const captions = document.createElement("track");
  captions.kind = "captions";
  captions.label = `${languageName(track)} captions`;
  const srclang = track === "original" ? state.data.source_language : track;
  if (srclang) captions.srclang = srclang;
  captions.src = `/media/captions/${track}.vtt?v=${state.version}`;
  captions.default = true;
  player.append(captions);
  player.src = `/media/video/${track}.mp4?v=${state.version}`;
  player.dataset.track = track;
  return new Promise((resolve) => {
    const ready = () => {
      player.currentTime = time;
      if (player.textTracks.length) player.textTracks[0].mode = "showing";
      if (wasPlaying) player.play().catch(() => {});
      resolve();
    };
    player.addEventListener("loadedmetadata", ready, { once: true });
    player.addEventListener("error", () => { showAlert(`The ${languageName(track)} video could not be played.`); resolve(); }, { once: true });
  });
}

async function playLine(track, index) {
  const line = lineByIndex(index);
  if (!line) return;
  const player = $("player");
  // the original line is its speech; the dub may use the pause after it (its slot)
  const end = track === "original" ? line.end : Math.max(line.end, line.slot_end);
  await setTrack(track, false);
  if (!state.data.job.video) return;
  state.range = { start: line.start, end, track, index };
  player.dataset.rangeStart = String(line.start);
  player.dataset.rangeEnd = String(end);
  player.dataset.playing = `${track}:${index}`;
  player.currentTime = line.start;
  for (const b of document.querySelectorAll(".block.playing")) b.classList.remove("playing");
  const block = document.querySelector(`.block[data-lang="${track}"][data-index="${index}"]`);
  if (block) block.classList.add("playing");
  say(`Playing line ${index} (${languageName(track)}), ${seconds(line.start)} to ${seconds(end)} s.`);
  try {
    await player.play();
  } catch (error) {
    say(`Could not play: ${error.message}`);
    return;
  }
  watchRange();
}

function watchRange() {
  const player = $("player");
  const step = () => {
    const range = state.range;
    if (!range) return;
    if (player.currentTime >= range.end || player.ended) {
      player.pause();
      state.range = null;
      player.dataset.playing = "";
      return;
    }
    if (!player.paused) requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
}

// -- the timeline ------------------------------------------------------------------------------------

function stateLabel(row) {
  const states = row.states.length ? row.states : ["fine"];
  return states.map((s) => STATE_LABELS[s]).join(", ");
}

function renderTimeline() {
  const lanes = $("lanes");
  lanes.textContent = "";
  $("sped-limit").textContent = String(state.data.sped_up_above);
  const fragment = document.createDocumentFragment();
  for (const [code, lang] of Object.entries(state.data.languages)) {
    const lane = document.createElement("div");
    lane.className = "lane";
    lane.dataset.lang = code;
    lane.setAttribute("role", "group");
    lane.setAttribute("aria-label", `${lang.name} lines`);
    const label = document.createElement("span");
    label.className = "lane-label";
    label.textContent = code;
    label.setAttribute("aria-hidden", "true");
    lane.append(label);
    lang.lines.forEach((row, n) => {
      const line = lineByIndex(row.index);
      const block = document.createElement("button");
      block.type = "button";
      block.className = `block state-${row.state}`;
      block.dataset.lang = code;
      block.dataset.index = String(row.index);
      block.tabIndex = n === 0 ? 0 : -1;
      block.textContent = String(row.index);
      const label = `${lang.name} line ${row.index}, ${seconds(line.start)} to ${seconds(line.end)} s: ${stateLabel(row)}`;
      block.setAttribute("aria-label", label);
      block.title = label;
      block.addEventListener("click", () => { focusRow(code, row.index); playLine(code, row.index); });
      lane.append(block);
    });
    lane.addEventListener("keydown", laneKeys);
    fragment.append(lane);
  }
  lanes.append(fragment);
  layoutTimeline();
}

function layoutTimeline() {
  const zoom = state.zoom;
  const width = Math.ceil(state.data.duration * zoom) + 8;
  $("zoom-value").textContent = `${zoom} px/s`;
  for (const lane of document.querySelectorAll(".lane")) lane.style.width = `${width}px`;
  for (const block of document.querySelectorAll(".block")) {
    const line = lineByIndex(Number(block.dataset.index));
    const row = rowOf(block.dataset.lang, line.index);
    const extent = row.placed_s != null ? row.placed_s : line.end - line.start;
    block.style.left = `${line.start * zoom}px`;
    block.style.width = `${Math.max(4, extent * zoom - 1)}px`;
  }
  drawWaveform();
  movePlayhead();
}

function laneKeys(event) {
  const blocks = [...event.currentTarget.querySelectorAll(".block")];
  const at = blocks.indexOf(document.activeElement);
  if (at < 0) return;
  let next = null;
  if (event.key === "ArrowRight") next = Math.min(blocks.length - 1, at + 1);
  else if (event.key === "ArrowLeft") next = Math.max(0, at - 1);
  else if (event.key === "Home") next = 0;
  else if (event.key === "End") next = blocks.length - 1;
  if (next === null) return;
  event.preventDefault();
  blocks[at].tabIndex = -1;
  blocks[next].tabIndex = 0;
  blocks[next].focus();
  blocks[next].scrollIntoView({ block: "nearest", inline: "nearest" });
}

async function loadWaveform() {
  try {
    const wave = await api("/api/waveform");
    const raw = atob(wave.peaks || "");
    const peaks = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) peaks[i] = raw.charCodeAt(i);
    state.waveform = { rate: wave.rate, peaks };
    drawWaveform();
  } catch (error) {
    say(`No waveform: ${error.message}`);
  }
}

function drawWaveform() {
  // the canvas covers what is visible only (a 10-minute job at full zoom is wider than a canvas may be)
  const canvas = $("waveform");
  const timeline = $("timeline");
  const labelWidth = $("timeline-inner").offsetLeft + parseFloat(getComputedStyle($("timeline-inner")).paddingLeft);
  const visible = Math.max(50, timeline.clientWidth - labelWidth);
  const scale = window.devicePixelRatio || 1;
  canvas.style.width = `${visible}px`;
  canvas.width = Math.round(visible * scale);
  canvas.height = Math.round(56 * scale);
  canvas.style.transform = `translateX(${timeline.scrollLeft}px)`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(scale, 0, 0, scale, 0, 0);
  ctx.clearRect(0, 0, visible, 56);
  const wave = state.waveform;
  if (!wave) return;
  ctx.fillStyle = "#3b4a5c";
  const t0 = timeline.scrollLeft / state.zoom;
  for (let x = 0; x < visible; x++) {
    const a = Math.floor((t0 + x / state.zoom) * wave.rate);
    const b = Math.max(a + 1, Math.floor((t0 + (x + 1) / state.zoom) * wave.rate));
    if (a >= wave.peaks.length) break;
    let peak = 0;
    for (let i = a; i < b && i < wave.peaks.length; i++) peak = Math.max(peak, wave.peaks[i]);
    const h = (peak / 255) * 52;
    ctx.fillRect(x, 28 - h / 2, 1, Math.max(1, h));
  }
}

function movePlayhead() {
  const player = $("player");
  const labelWidth = parseFloat(getComputedStyle($("timeline-inner")).paddingLeft);
  $("playhead").style.left = `${labelWidth + (player.currentTime || 0) * state.zoom}px`;
}

function setZoom(value) {
  const timeline = $("timeline");
  const centre = (timeline.scrollLeft + timeline.clientWidth / 2) / state.zoom;
  state.zoom = Math.max(2, Math.min(200, Math.round(value)));
  $("zoom").value = String(state.zoom);
  layoutTimeline();
  timeline.scrollLeft = Math.max(0, centre * state.zoom - timeline.clientWidth / 2);
}

// -- the line table ----------------------------------------------------------------------------------

function buildLanguagePicker() {
  const select = $("table-lang");
  for (const code of Object.keys(state.data.languages)) {
    const option = document.createElement("option");
    option.value = code;
    option.textContent = languageName(code);
    select.append(option);
  }
  state.tableLang = select.value;
}

function hasSpeakers() { return state.data.speakers.length > 1; }

function renderSpeakers() {
  const box = $("speakers");
  box.textContent = "";
  if (!hasSpeakers() || !state.voices.length) return;
  const table = document.createElement("table");
  table.innerHTML = "<caption>Cast: a voice per speaker (cast.json)</caption><thead><tr><th scope=col>Speaker</th><th scope=col>Voice</th></tr></thead>";
  const body = document.createElement("tbody");
  for (const speaker of state.data.speakers) {
    const tr = document.createElement("tr");
    const who = document.createElement("td");
    who.textContent = speaker.name ? `${speaker.id} (${speaker.name})` : speaker.id;
    const cell = document.createElement("td");
    const select = voiceSelect(speaker.voice || "", false);
    select.setAttribute("aria-label", `Voice of speaker ${speaker.id}`);
    select.addEventListener("change", () => save(`/api/cast/${encodeURIComponent(speaker.id)}`, { voice: select.value }, null));
    cell.append(select);
    tr.append(who, cell);
    body.append(tr);
  }
  table.append(body);
  box.append(table);
}

function voiceOption(name) {
  const option = document.createElement("option");
  option.value = name;
  option.textContent = name || "speaker's voice";
  return option;
}

// A menu holds its current voice only until it is focused or pressed: 160 lines x 48 voices would be
// 7,700 options built at load (measured: about half of the line table's build time).
function voiceSelect(current, allowInherit) {
  const select = document.createElement("select");
  select.append(voiceOption(current));
  const fill = () => {
    if (select.dataset.filled) return;
    select.dataset.filled = "1";
    const names = allowInherit ? ["", ...state.voices] : [...state.voices];
    if (current && !names.includes(current)) names.push(current);
    select.textContent = "";
    for (const name of names) select.append(voiceOption(name));
    select.value = current;
  };
  select.addEventListener("focus", fill);
  select.addEventListener("pointerdown", fill);
  return select;
}

function renderTable() {
  const lang = state.tableLang;
  const head = $("lines").tHead;
  const speakers = hasSpeakers();
  head.innerHTML = "";
  const headRow = document.createElement("tr");
  const columns = ["#", "Start (s)", "End (s)", ...(speakers ? ["Speaker"] : []), "Voice", "Source",
    `Translation (${languageName(lang)})`, "Speed", "Flags", "Play", "Approved"];
  for (const name of columns) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = name;
    headRow.append(th);
  }
  head.append(headRow);
  const body = $("lines").tBodies[0];
  body.textContent = "";
  const fragment = document.createDocumentFragment();
  for (const line of state.data.lines) fragment.append(buildRow(line, lang, speakers));
  body.append(fragment);
  filterRows();
}

function cellWith(...children) {
  const td = document.createElement("td");
  td.append(...children);
  return td;
}

function numberInput(value, label, field, index) {
  const input = document.createElement("input");
  input.type = "number";
  input.step = "0.01";
  input.min = "0";
  input.value = seconds(value);
  input.setAttribute("aria-label", label);
  input.addEventListener("change", () => {
    const v = Number(input.value);
    if (input.value === "" || !Number.isFinite(v)) { showAlert(`${label}: enter a number of seconds.`); return; }
    save(`/api/lines/${index}`, { [field]: v }, index);
  });
  return input;
}

function buildRow(line, lang, speakers) {
  const row = rowOf(lang, line.index);
  const tr = document.createElement("tr");
  tr.id = `row-${line.index}`;
  tr.dataset.index = String(line.index);
  const n = line.index;
  const idx = document.createElement("td");
  idx.className = "num";
  idx.textContent = String(n);
  tr.append(idx);
  tr.append(cellWith(numberInput(line.start, `Line ${n} start (seconds)`, "start", n)));
  tr.append(cellWith(numberInput(line.end, `Line ${n} end (seconds)`, "end", n)));
  if (speakers) {
    const td = document.createElement("td");
    td.textContent = line.speaker;
    tr.append(td);
  }
  if (state.voices.length) {
    const select = voiceSelect(line.voice || "", true);
    select.setAttribute("aria-label", `Line ${n} voice`);
    select.addEventListener("change", () => save(`/api/lines/${n}`, { voice: select.value || null }, n));
    tr.append(cellWith(select));
  } else {
    tr.append(cellWith(document.createTextNode(line.voice || "speaker's voice")));
  }
  const source = document.createElement("td");
  source.className = "source";
  source.lang = state.data.source_language || "";
  source.textContent = line.text;
  tr.append(source);
  const text = document.createElement("textarea");
  text.value = row.text;
  text.lang = lang;
  text.rows = 2;
  text.setAttribute("aria-label", `Line ${n} translation (${languageName(lang)})`);
  text.addEventListener("change", () => save(`/api/lines/${n}`, { translations: { [lang]: text.value } }, n));
  tr.append(cellWith(text));
  const speed = document.createElement("td");
  speed.className = "num speed";
  tr.append(speed);
  const flags = document.createElement("td");
  flags.className = "flags";
  tr.append(flags);
  const playOriginal = document.createElement("button");
  playOriginal.type = "button";
  playOriginal.textContent = "Original";
  playOriginal.setAttribute("aria-label", `Play line ${n}, original`);
  playOriginal.addEventListener("click", () => playLine("original", n));
  const playDub = document.createElement("button");
  playDub.type = "button";
  playDub.textContent = "Dub";
  playDub.setAttribute("aria-label", `Play line ${n}, ${languageName(lang)} dub`);
  playDub.addEventListener("click", () => playLine(lang, n));
  tr.append(cellWith(playOriginal, " ", playDub));
  const approve = document.createElement("input");
  approve.type = "checkbox";
  approve.className = "approve";
  approve.setAttribute("aria-label", `Approve line ${n} (${languageName(lang)})`);
  approve.addEventListener("change", () => save(`/api/lines/${n}`, { approved: { [lang]: approve.checked } }, n));
  tr.append(cellWith(approve));
  fillRow(tr, line.index);
  return tr;
}

function fillRow(tr, index) {
  const lang = state.tableLang;
  const row = rowOf(lang, index);
  tr.querySelector(".speed").textContent = row.speed == null ? "—" : `${row.speed.toFixed(2)}×`;
  const flags = tr.querySelector(".flags");
  flags.textContent = "";
  for (const s of row.states) {
    const span = document.createElement("span");
    span.className = `flag state-${s}`;
    span.textContent = STATE_LABELS[s];
    flags.append(span);
  }
  if (row.stale) {
    const span = document.createElement("span");
    span.className = "flag";
    span.textContent = "source changed: re-dub to translate";
    flags.append(span);
  }
  tr.querySelector(".approve").checked = row.states.includes("approved");
  tr.dataset.state = row.state;
}

function filterRows() {
  const only = $("only-problems").checked;
  for (const tr of $("lines").tBodies[0].rows) {
    tr.hidden = only && (tr.dataset.state === "fine" || tr.dataset.state === "approved");
  }
}

function focusRow(lang, index) {
  if (lang !== state.tableLang) {
    state.tableLang = lang;
    $("table-lang").value = lang;
    renderTable();
  }
  for (const tr of document.querySelectorAll("tr.current")) tr.classList.remove("current");
  const tr = $(`row-${index}`);
  if (tr) tr.classList.add("current");
}

async function save(path, body, index) {
  const tr = index == null ? null : $(`row-${index}`);
  if (tr) tr.classList.add("saving");
  try {
    state.data = await api(path, { method: "PATCH", body });
    showAlert("");
    say(index == null ? "Cast saved." : `Line ${index} saved.`);
    $("redub").disabled = true;
    delete $("redub").dataset.estimated;
  } catch (error) {
    showAlert(`Not saved: ${error.message}`);
  }
  if (tr) tr.classList.remove("saving");
  // whatever happened, show what the files now say
  for (const block of document.querySelectorAll(".block")) {
    const row = rowOf(block.dataset.lang, Number(block.dataset.index));
    const line = lineByIndex(row.index);
    block.className = `block state-${row.state}`;
    const label = `${languageName(block.dataset.lang)} line ${row.index}, ${seconds(line.start)} to ${seconds(line.end)} s: ${stateLabel(row)}`;
    block.setAttribute("aria-label", label);
    block.title = label;
  }
  layoutTimeline();
  if (tr) {
    const line = lineByIndex(index);
    const inputs = tr.querySelectorAll("input[type=number]");
    inputs[0].value = seconds(line.start);
    inputs[1].value = seconds(line.end);
    tr.querySelector("textarea").value = rowOf(state.tableLang, index).text;
    fillRow(tr, index);
  }
  renderSpeakersIfNeeded(index);
}

function renderSpeakersIfNeeded(index) {
  if (index == null) renderSpeakers();
}

// -- re-dub ------------------------------------------------------------------------------------------

async function runEstimate() {
  const out = $("estimate-result");
  out.textContent = "Estimating…";
  try {
    const e = await api("/api/estimate", { method: "POST", body: {} });
    const table = document.createElement("table");
    table.innerHTML = "<caption>What a re-dub would do now</caption><thead><tr><th scope=col>Language</th>" +
      "<th scope=col>Changed lines</th><th scope=col>Lines to synthesise</th><th scope=col>Characters</th><th scope=col>Cost</th></tr></thead>";
    const body = document.createElement("tbody");
    for (const lang of e.languages) {
      const tr = document.createElement("tr");
      for (const value of [languageName(lang.language), lang.changed_lines, lang.lines_to_synthesize,
        `${lang.characters}${lang.exact ? "" : " (estimated)"}`, `${lang.cost.toFixed(4)} ${lang.currency}`]) {
        const td = document.createElement("td");
        td.textContent = String(value);
        tr.append(td);
      }
      body.append(tr);
    }
    table.append(body);
    out.textContent = "";
    const total = document.createElement("p");
    total.textContent = `Total: ${e.lines_to_synthesize} lines to synthesise, ${e.characters} characters, ${e.cost.toFixed(4)} ${e.currency}.`;
    out.append(table, total);
    $("redub").dataset.estimated = "1";
    $("redub").disabled = false;
  } catch (error) {
    out.textContent = "";
    showAlert(`Estimate failed: ${error.message}`);
  }
}

async function runRedub() {
  try {
    const run = await api("/api/redub", { method: "POST", body: {} });
    state.redubbing = true;
    $("redub").disabled = true;
    delete $("redub").dataset.estimated;
    showRedub(run);
    clearInterval(state.polling);
    state.polling = setInterval(poll, 1000);
  } catch (error) {
    showAlert(`Re-dub not started: ${error.message}`);
  }
}

function showRedub(run) {
  const box = $("redub-progress");
  if (!run || run.state === "idle") { box.textContent = ""; return; }
  box.textContent = "";
  const head = document.createElement("p");
  const what = { running: "Re-dub running", completed: "Re-dub finished", failed: "Re-dub failed" }[run.state] || run.state;
  head.textContent = `${what}${run.stage ? ` (${run.stage})` : ""}${run.message && run.state !== "running" ? `: ${run.message}` : ""}`;
  box.append(head);
  if (run.flow_run_id) {
    const p = document.createElement("p");
    p.textContent = `Prefect flow run ${run.flow_run_name || ""} ${run.flow_run_id}`;
    box.append(p);
  }
  for (const [lang, [done, total]] of Object.entries(run.progress || {})) {
    const row = document.createElement("div");
    row.className = "progress-row";
    const label = document.createElement("label");
    label.textContent = `${languageName(lang)}: ${done}/${total} lines`;
    const bar = document.createElement("progress");
    bar.max = total;
    bar.value = done;
    bar.id = `progress-${lang}`;
    label.htmlFor = bar.id;
    row.append(label, bar);
    box.append(row);
  }
}

// -- wiring ------------------------------------------------------------------------------------------

function bindControls() {
  $("zoom").addEventListener("input", () => setZoom(Number($("zoom").value)));
  $("zoom-in").addEventListener("click", () => setZoom(state.zoom * 1.5));
  $("zoom-out").addEventListener("click", () => setZoom(state.zoom / 1.5));
  $("timeline").addEventListener("scroll", () => drawWaveform(), { passive: true });
  window.addEventListener("resize", () => drawWaveform());
  $("player").addEventListener("timeupdate", movePlayhead);
  $("table-lang").addEventListener("change", () => { state.tableLang = $("table-lang").value; renderTable(); });
  $("only-problems").addEventListener("change", filterRows);
  $("estimate").addEventListener("click", runEstimate);
  $("redub").addEventListener("click", runRedub);
}

document.addEventListener("DOMContentLoaded", start);
