// ganforge serve: the page. Plain JavaScript, no build step. The server draws every image
// (ganforge.latent through /api/models/NAME/grid and /walk); this file only turns controls
// into requests, shows the answers and keeps the newest request the one that counts: each
// view aborts its previous fetch when a control changes again.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], model: null, runs: [], run: null, charts: {}, walk: null };

// ---- requests: the latest one wins -------------------------------------------------------
class Latest {
  // one in-flight request per view; starting a new one aborts the old, whose answer is dropped
  constructor() { this.controller = null; this.count = 0; }
  async fetch(url) {
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    const number = ++this.count;
    const response = await fetch(url, { signal: controller.signal });
    const body = await response.blob();
    if (number !== this.count) throw new DOMException("replaced", "AbortError");
    if (!response.ok) throw new Error((await body.text()).trim() || response.statusText);
    return { response, body };
  }
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error((await response.text()).trim());
  return response.json();
}

function setStatus(element, text, error) {
  element.textContent = text;
  element.classList.toggle("error", Boolean(error));
}

// ---- the generator explorer ----------------------------------------------------------------
const gridRequests = new Latest();
const walkRequests = new Latest();
let gridURL = null;

function latentParams() {
  const params = new URLSearchParams();
  const label = $("class").value;
  if (label !== "") params.set("class", label);
  if ($("trunc-on").checked) params.set("truncation", $("psi").value);
  const noise = $("noise").value;
  if (noise !== "") {
    params.set("noise", noise);
    if (noise === "normal" && $("noise-std").value !== "") params.set("noise_std", $("noise-std").value);
  }
  return params;
}

function gridQuery(format) {
  const first = Math.max(0, parseInt($("seed").value || "0", 10) || 0);
  const size = parseInt($("size").value, 10);
  const params = latentParams();
  params.set("seeds", size === 1 ? `${first}` : `${first}-${first + size - 1}`);
  if (format) params.set("format", format);
  return `/api/models/${encodeURIComponent(state.model.name)}/grid?${params}`;
}

function walkQuery(format) {
  const params = latentParams();
  params.set("seeds", $("walk-seeds").value.replace(/\s+/g, ""));
  params.set("frames", $("frames").value);
  params.set("loop", $("loop").checked ? "1" : "0");
  if (format) params.set("format", format);
  return `/api/models/${encodeURIComponent(state.model.name)}/walk?${params}`;
}

async function drawGrid() {
  if (!state.model) return;
  const image = $("grid");
  image.dataset.state = "loading";
  const started = performance.now();
  try {
    const { response, body } = await gridRequests.fetch(gridQuery());
    if (gridURL) URL.revokeObjectURL(gridURL);
    gridURL = URL.createObjectURL(body);
    image.src = gridURL;
    await image.decode();
    image.dataset.state = "ready";
    image.dataset.query = gridQuery();
    $("grid-command").textContent = decodeURIComponent(response.headers.get("X-Ganforge-Command") || "");
    for (const format of ["png", "npy", "nii"]) $(`dl-${format}`).href = gridQuery(format);
    setStatus($("grid-status"), `${$("size").value} images in ${Math.round(performance.now() - started)} ms`);
  } catch (error) {
    if (error.name === "AbortError") return;
    image.dataset.state = "error";
    setStatus($("grid-status"), error.message, true);
  }
}

const walkPlayer = { image: null, frames: 0, frame: 0, timer: null, fps: 20 };

function showFrame(index) {
  const canvas = $("walk");
  const player = walkPlayer;
  if (!player.image) return;
  player.frame = ((index % player.frames) + player.frames) % player.frames;
  const width = player.image.naturalWidth;
  const height = player.image.naturalHeight / player.frames;
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.drawImage(player.image, 0, player.frame * height, width, height, 0, 0, width, height);
  $("frame").value = player.frame;
  $("frame-value").textContent = player.frame;
  canvas.dataset.frame = player.frame;
}

function pause() {
  clearInterval(walkPlayer.timer);
  walkPlayer.timer = null;
  $("play").textContent = "Play";
}

function play() {
  if (walkPlayer.timer) return pause();
  walkPlayer.timer = setInterval(() => showFrame(walkPlayer.frame + 1), 1000 / walkPlayer.fps);
  $("play").textContent = "Pause";
}

async function drawWalk() {
  if (!state.model) return;
  const canvas = $("walk");
  canvas.dataset.state = "loading";
  // the frame count this request asks for (the field may change before the answer comes)
  const frames = parseInt($("frames").value, 10);
  try {
    const { response, body } = await walkRequests.fetch(walkQuery());
    const url = URL.createObjectURL(body);
    const image = new Image();
    image.src = url;
    await image.decode();
    if (walkPlayer.image) URL.revokeObjectURL(walkPlayer.image.src);
    walkPlayer.image = image;
    walkPlayer.frames = frames;
    $("frame").max = walkPlayer.frames - 1;
    showFrame(Math.min(walkPlayer.frame, walkPlayer.frames - 1));
    canvas.dataset.state = "ready";
    $("walk-command").textContent = decodeURIComponent(response.headers.get("X-Ganforge-Command") || "");
    $("dl-gif").href = walkQuery("gif");
    $("dl-walk-npy").href = walkQuery("npy");
    $("dl-strip").href = walkQuery("png");
    setStatus($("walk-status"), `${walkPlayer.frames} frames`);
  } catch (error) {
    if (error.name === "AbortError") return;
    canvas.dataset.state = "error";
    setStatus($("walk-status"), error.message, true);
  }
}

async function chooseModel(name) {
  // the facts (classes, noise law, shape) come with loading the model, on first choice
  const listed = state.models.find((m) => m.name === name) || state.models[0];
  if (!listed.facts) {
    try {
      listed.facts = await getJSON(`/api/models/${encodeURIComponent(listed.name)}`);
    } catch (error) {
      setStatus($("grid-status"), error.message, true);
      return;
    }
  }
  const model = listed.facts;
  state.model = model;
  const shape = model.image_shape.join(" × ");
  const count = model.classes.length ? ` · ${model.classes.length} classes` : "";
  $("model-facts").textContent = `${model.arch} trained on ${model.dataset}, iteration ${model.step} · ${shape}${count} · ${model.noise} noise`;
  const classes = $("class");
  classes.replaceChildren(new Option("each seed's own", ""));
  model.classes.forEach((label, index) => {
    classes.add(new Option(label === String(index) ? label : `${index} ${label}`, label));
  });
  $("class-label").hidden = model.classes.length === 0;
  const noise = $("noise");
  noise.replaceChildren(new Option(`trained: ${model.noise}${model.noise === "normal" ? ` σ ${model.noise_std}` : ""}`, ""));
  for (const law of ["normal", "uniform"]) noise.add(new Option(law, law));
  $("noise-std").value = model.noise_std;
  $("std-label").hidden = true;
  $("trunc-on").disabled = model.noise !== "normal";
  $("nii-part").hidden = model.image_shape[0] !== 1;
  drawGrid();
  drawWalk();
}

function setUpExplorer() {
  const redraw = debounce(drawGrid, 40);
  const redrawBoth = debounce(() => { drawGrid(); drawWalk(); }, 60);
  $("model").addEventListener("change", (e) => chooseModel(e.target.value));
  for (const id of ["seed", "size"]) $(id).addEventListener("input", redraw);
  $("seed-prev").addEventListener("click", () => {
    $("seed").value = Math.max(0, parseInt($("seed").value || "0", 10) - parseInt($("size").value, 10));
    drawGrid();
  });
  $("seed-next").addEventListener("click", () => {
    $("seed").value = parseInt($("seed").value || "0", 10) + parseInt($("size").value, 10);
    drawGrid();
  });
  $("class").addEventListener("change", redrawBoth);
  $("trunc-on").addEventListener("change", () => { $("psi").disabled = !$("trunc-on").checked; redrawBoth(); });
  $("psi").addEventListener("input", () => {
    $("psi-value").textContent = Number($("psi").value).toFixed(2);
    redrawBoth();
  });
  $("noise").addEventListener("change", () => {
    const law = $("noise").value || state.model.noise;
    $("std-label").hidden = $("noise").value !== "normal";
    $("trunc-on").disabled = law !== "normal";
    if (law !== "normal") { $("trunc-on").checked = false; $("psi").disabled = true; }
    redrawBoth();
  });
  $("noise-std").addEventListener("input", redrawBoth);
  for (const id of ["walk-seeds", "frames", "loop"]) $(id).addEventListener("change", () => { pause(); drawWalk(); });
  $("play").addEventListener("click", play);
  $("frame").addEventListener("input", () => { pause(); showFrame(parseInt($("frame").value, 10)); });
}

// ---- the runs browser ------------------------------------------------------------------------
const ticked = new Set();

function formatNumber(value) {
  if (value === null || value === undefined) return "–";
  return Math.abs(value) >= 100 ? value.toFixed(1) : value.toPrecision(4);
}

function renderRuns() {
  const body = $("runs-table").querySelector("tbody");
  body.replaceChildren();
  $("no-runs").hidden = state.runs.length > 0;
  $("runs-table").hidden = state.runs.length === 0;
  for (const run of state.runs) {
    const row = body.insertRow();
    row.dataset.run = run.name;
    row.classList.toggle("selected", state.run === run.name);
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = ticked.has(run.name);
    box.title = "tick two or more finished runs to compare them";
    box.addEventListener("change", () => {
      if (box.checked) ticked.add(run.name); else ticked.delete(run.name);
      updateCompareLink();
    });
    row.insertCell().append(box);
    const link = document.createElement("a");
    link.href = `#run=${encodeURIComponent(run.name)}`;
    link.textContent = run.name;
    link.addEventListener("click", (event) => { event.preventDefault(); openRun(run.name); });
    row.insertCell().append(link);
    row.insertCell().textContent = run.preset;
    const status = row.insertCell();
    status.textContent = run.status;
    status.className = `status-${run.status}`;
    const steps = row.insertCell();
    steps.className = "num";
    steps.textContent = run.total ? `${run.step} / ${run.total}` : `${run.step}`;
    const metric = row.insertCell();
    metric.textContent = run.metric ? `${run.metric} ${formatNumber(run.metric_value)}` : "–";
  }
}

function updateCompareLink() {
  const link = $("compare-link");
  const names = state.runs.map((r) => r.name).filter((n) => ticked.has(n));
  link.classList.toggle("disabled", names.length < 2);
  link.href = names.length >= 2 ? `/compare?runs=${encodeURIComponent(names.join(","))}` : "#";
}

function fileURL(run, path) {
  return `/api/runs/${encodeURIComponent(run)}/files/${path.split("/").map(encodeURIComponent).join("/")}`;
}

function chart(id, title, seriesNames, columns) {
  // uPlot draws the curve; the page only hands it columns [x, y1, y2, ...]
  const element = $(id);
  const points = columns[0].length;
  element.dataset.points = points;
  const existing = state.charts[id];
  if (existing && existing.series.length === seriesNames.length + 1) {
    existing.setData(columns);
    return;
  }
  if (existing) existing.destroy();
  const colours = ["#0969da", "#cf222e", "#1a7f37", "#8250df"];
  const options = {
    title, width: Math.min(900, element.parentElement.clientWidth || 900), height: 260,
    scales: { x: { time: false } },
    series: [{ label: "iteration" }, ...seriesNames.map((name, i) => ({ label: name, stroke: colours[i % 4], width: 1.5 }))],
  };
  state.charts[id] = new uPlot(options, columns, element);
}

function column(records, key) {
  return records.map((r) => (r[key] === undefined ? null : r[key]));
}

function renderEvalTables(tables) {
  const holder = $("eval-tables");
  if (!tables.length) return;
  holder.replaceChildren();
  for (const table of tables) {
    const caption = document.createElement("p");
    caption.textContent = `${table.file}: ${table.count} images, seed ${table.seed}, iteration ${table.step}, against ${table.reference}`;
    const element = document.createElement("table");
    element.className = "eval";
    element.createTHead().insertRow().append(...["metric", "value", "95 % interval", "better"].map((t) => {
      const th = document.createElement("th"); th.textContent = t; return th;
    }));
    const body = element.createTBody();
    for (const row of table.rows) {
      const tr = body.insertRow();
      tr.insertCell().textContent = row.metric;
      const value = tr.insertCell(); value.className = "num"; value.textContent = formatNumber(row.value);
      const interval = tr.insertCell(); interval.className = "num";
      interval.textContent = row.interval ? `${formatNumber(row.interval[0])} – ${formatNumber(row.interval[1])}` : "";
      tr.insertCell().textContent = row.better;
    }
    holder.append(caption, element);
  }
}

function renderRun(detail) {
  $("run-detail").hidden = false;
  $("run-title").textContent = `${detail.name} (${detail.status})`;
  $("run-title").dataset.status = detail.status;
  const reals = detail.reals ? fileURL(detail.name, detail.reals) : null;
  if (reals && $("reals").getAttribute("src") !== reals) $("reals").src = reals;
  $("reals").hidden = !detail.reals;
  const scrub = $("scrub");
  const atEnd = Number(scrub.value) >= Number(scrub.max);
  state.frames = detail.frames;
  scrub.max = Math.max(0, detail.frames.length - 1);
  if (atEnd) scrub.value = scrub.max;
  showRunFrame();
  const log = detail.log;
  const lossKeys = ["d_loss", "g_loss"].filter((k) => log.some((r) => r[k] !== undefined));
  chart("loss-chart", "D and G losses", lossKeys, [column(log, "step"), ...lossKeys.map((k) => column(log, k))]);
  const evals = detail.evals;
  $("no-metric").hidden = Boolean(detail.metric && evals.length);
  if (detail.metric && evals.length) {
    chart("metric-chart", detail.metric, [detail.metric], [column(evals, "step"), column(evals, detail.metric)]);
  }
  renderEvalTables(detail.eval_tables);
  $("config").textContent = JSON.stringify(detail.config, null, 2);
}

function showRunFrame() {
  const frames = state.frames || [];
  const frame = frames[Number($("scrub").value)];
  if (!frame) return;
  const url = fileURL(state.run, frame.file);
  if ($("run-grid").getAttribute("src") !== url) $("run-grid").src = url;
  $("scrub-step").textContent = frame.step;
}

async function openRun(name) {
  state.run = name;
  $("scrub").value = 1e9;
  for (const id of Object.keys(state.charts)) { state.charts[id].destroy(); delete state.charts[id]; }
  renderRuns();
  try {
    renderRun(await getJSON(`/api/runs/${encodeURIComponent(name)}`));
  } catch (error) {
    $("run-title").textContent = error.message;
  }
}

async function refreshRuns() {
  try {
    const runs = (await getJSON("/api/runs")).runs;
    // redraw the table only when something changed: a click is not lost to a redraw
    if (JSON.stringify(runs) !== JSON.stringify(state.runs)) {
      state.runs = runs;
      renderRuns();
      updateCompareLink();
    }
    const current = state.runs.find((r) => r.name === state.run);
    // a run still training: fetch its log, grids and curves again (polling; no reload)
    if (current && (current.status === "running" || $("run-title").dataset.status === "running")) {
      renderRun(await getJSON(`/api/runs/${encodeURIComponent(current.name)}`));
    }
  } catch (error) {
    console.warn("runs refresh failed:", error.message);
  }
}

// ---- start ---------------------------------------------------------------------------------
function showTab(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.tab === name);
  $("explore").hidden = name !== "explore";
  $("runs").hidden = name !== "runs";
}

async function start() {
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showTab(tab.dataset.tab));
  for (const button of document.querySelectorAll(".copy")) {
    button.addEventListener("click", async () => {
      const text = $(button.dataset.copy).textContent;
      try { await navigator.clipboard.writeText(text); button.textContent = "Copied"; }
      catch (error) { window.getSelection().selectAllChildren($(button.dataset.copy)); button.textContent = "Selected: Ctrl-C"; }
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  }
  $("scrub").addEventListener("input", showRunFrame);
  setUpExplorer();
  const [models, runs] = await Promise.all([getJSON("/api/models"), getJSON("/api/runs")]);
  state.models = models.models;
  state.runs = runs.runs;
  $("no-models").hidden = state.models.length > 0;
  $("explorer").hidden = state.models.length === 0;
  $("model").replaceChildren(...state.models.map((m) => new Option(m.run ? `${m.name} (run)` : m.name, m.name)));
  renderRuns();
  updateCompareLink();
  if (state.models.length) await chooseModel(state.models[0].name);
  if (!state.models.length && state.runs.length) showTab("runs");
  const wanted = new URLSearchParams(location.hash.slice(1));
  if (wanted.get("tab")) showTab(wanted.get("tab"));
  if (wanted.get("run")) { showTab("runs"); openRun(wanted.get("run")); }
  else if (state.runs.length === 1) openRun(state.runs[0].name);
  setInterval(refreshRuns, 1500);
  document.body.dataset.ready = "1";
}

start().catch((error) => setStatus($("grid-status"), error.message, true));
