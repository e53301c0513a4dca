// The page: pick or drop an image (or a video: frames grabbed in the browser with a <video> and a
// canvas), send it to POST v1/depth, show input | depth and the 3D view, offer the outputs.
// Everything goes through the same public API a script uses (docs/server.md).
import { DepthView } from "./viewer.js";

const $ = (id) => document.getElementById(id);
const ui = {
  model: $("model"), drop: $("drop"), file: $("file"), colormap: $("colormap"), invert: $("invert"),
  mode: $("mode"), texture: $("texture"), relief: $("relief"), input: $("input"), depth: $("depth"),
  status: $("status"), video: $("video"), videoControls: $("video-controls"), frame: $("frame"),
  frameLabel: $("frame-label"), play: $("play"), tokenForm: $("token-form"), token: $("token"),
  dlDepth: $("dl-depth"), dlNpy: $("dl-npy"), dlFormat: $("dl-format"), dlOther: $("dl-other"), dl3d: $("dl-3d"),
};
const FRAME_STEP_S = 0.1;          // the video slider's resolution
const view = makeView($("view"));

function makeView(container) {
  try {
    return new DepthView(container);
  } catch (e) {   // no WebGL here: everything but the 3D view still works
    container.textContent = `3D view unavailable: ${e.message}`;
    return { show() {}, update() {}, snapshot: async () => new Blob() };
  }
}
const state = {
  info: null, name: "image", blob: null,       // the current input, encoded (PNG for video frames)
  npy: null, colour: null, colourUrl: null,    // its raw depth (ArrayBuffer) and colour PNG (Blob)
  generation: 0, playing: false,
};

// ------------------------------------------------------------------------- the API
let token = sessionStorage.getItem("depthcli-token") || "";
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) {
  token = fromHash;
  sessionStorage.setItem("depthcli-token", token);
  history.replaceState(null, "", location.pathname + location.search);
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    ui.tokenForm.hidden = false;
    throw new Error("this server needs a token: enter it above");
  }
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try { message = (await response.json()).error || message; } catch { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function depthUrl(format, extra = {}) {
  const q = new URLSearchParams({ format, ...extra });
  return `v1/depth?${q}`;
}

async function requestDepth(blob, format, extra) {
  const response = await api(depthUrl(format, extra), {
    method: "POST", body: blob,
    headers: { "Content-Type": "application/octet-stream", "X-Depthcli-Name": state.name },
  });
  return { data: await response.blob(), headers: response.headers };
}

async function loadInfo() {
  try {
    const info = await (await api("v1/info")).json();
    state.info = info;
    ui.model.textContent = `${info.model} · ${info.backend} ${info.device} ${info.precision} · size ${info.size}` +
      (info.metric ? ` · metric (m)` : "");
    ui.colormap.replaceChildren(...info.colormaps.map((name) => new Option(name, name, false, name === "inferno")));
    const others = Object.keys(info.formats).filter((f) => f !== "color" && f !== "npy");
    ui.dlFormat.replaceChildren(...others.map((f) => new Option(`${f} (.${info.formats[f]})`, f)));
    ui.tokenForm.hidden = true;
    setStatus("Ready: drop an image or a video.");
  } catch (e) {
    ui.model.textContent = "not connected";
    setStatus(e.message, true);
  }
}

// ------------------------------------------------------------------------- npy
function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes[0] !== 0x93 || String.fromCharCode(...bytes.slice(1, 6)) !== "NUMPY") throw new Error("not an .npy");
  const major = bytes[6];
  const dv = new DataView(buffer);
  const headerLen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder("latin1").decode(bytes.slice(start, start + headerLen));
  if (!/'descr':\s*'<f4'/.test(header) || /'fortran_order':\s*True/.test(header)) throw new Error("unexpected .npy layout");
  const [h, w] = header.match(/'shape':\s*\((\d+),\s*(\d+)\)/).slice(1).map(Number);
  const offset = start + headerLen;
  const data = offset % 4 === 0 ? new Float32Array(buffer, offset, h * w)
                                : new Float32Array(buffer.slice(offset, offset + 4 * h * w));
  return { depth: data, h, w };
}

// ------------------------------------------------------------------------- one input
async function process(blob, { keepCamera = false } = {}) {
  const generation = ++state.generation;
  state.blob = blob;
  setStatus("Computing...");
  try {
    const [raw, colour] = await Promise.all([requestDepth(blob, "npy"), requestColour(blob)]);
    if (generation !== state.generation) return;   // a newer input took over
    const npy = await raw.data.arrayBuffer();
    state.npy = npy;
    await showColour(colour.data);
    const { depth, h, w } = parseNpy(npy);
    view.show({ depth, h, w, metric: !!state.info?.metric, photo: ui.input, colours: ui.depth,
                ...viewOptions() }, keepCamera);
    [ui.dlDepth, ui.dlNpy, ui.dlFormat, ui.dlOther, ui.dl3d].forEach((b) => { b.disabled = false; });
    ui.dlFormat.disabled = ui.dlOther.disabled = ui.dlFormat.options.length === 0;
    setStatus(timingLine(raw.headers));
    document.body.dataset.ready = String(generation);  // for scripts and tests: the views are drawn
  } catch (e) {
    if (generation === state.generation) setStatus(e.message, true);
  }
}

function requestColour(blob) {
  const extra = { colormap: ui.colormap.value || "inferno" };
  if (ui.invert.checked) extra.invert = "true";
  return requestDepth(blob, "color", extra);
}

async function showColour(blob) {
  state.colour = blob;
  if (state.colourUrl) URL.revokeObjectURL(state.colourUrl);
  state.colourUrl = URL.createObjectURL(blob);
  ui.depth.src = state.colourUrl;
  await ui.depth.decode();
}

function timingLine(headers) {
  const [h, w] = (headers.get("X-Depthcli-Input-HW") || "0,0").split(",");
  const [nh, nw] = (headers.get("X-Depthcli-Network-HW") || "0,0").split(",");
  const ms = (name) => Math.round(Number(headers.get(name) || 0));
  return `${state.name}: ${w}x${h} -> ${nw}x${nh}, inference ${ms("X-Depthcli-Infer-Ms")} ms, ` +
    `total ${ms("X-Depthcli-Total-Ms")} ms, request ${ms("X-Depthcli-Request-Ms")} ms ` +
    `(${headers.get("X-Depthcli-Unit") || ""})`;
}

function viewOptions() {
  return { mode: ui.mode.value, texture: ui.texture.value, relief: Number(ui.relief.value) };
}

async function drawInput(source, w, h) {
  ui.input.width = w; ui.input.height = h;
  ui.input.getContext("2d").drawImage(source, 0, 0, w, h);
}

// ------------------------------------------------------------------------- files
async function openFile(file) {
  if (!file) return;
  stopPlaying();
  state.name = file.name || "image";
  if (file.type.startsWith("video/") || /\.(mp4|webm|mov|mkv|ogv|m4v)$/i.test(file.name)) {
    await openVideo(file);
    return;
  }
  ui.videoControls.hidden = true;
  try {
    const bitmap = await createImageBitmap(file);
    await drawInput(bitmap, bitmap.width, bitmap.height);
  } catch {
    // the browser cannot show it (TIFF, 16-bit PNG in some browsers): the server may still read it
    ui.input.width = ui.input.height = 1;
  }
  await process(file);
}

async function openVideo(file) {
  const video = ui.video;
  if (video.src) URL.revokeObjectURL(video.src);
  video.src = URL.createObjectURL(file);
  try {
    await new Promise((resolve, reject) => {
      video.onloadeddata = resolve;
      video.onerror = () => reject(new Error("this browser cannot play that video"));
    });
  } catch (e) {
    setStatus(e.message, true);
    return;
  }
  const frames = Math.max(1, Math.floor(video.duration / FRAME_STEP_S));
  ui.frame.max = String(frames - 1);
  ui.frame.value = "0";
  ui.videoControls.hidden = false;
  await showFrame(0, false);
}

async function showFrame(index, keepCamera = true) {
  const video = ui.video;
  const t = Math.min(index * FRAME_STEP_S, Math.max(0, video.duration - 0.001));
  if (Math.abs(video.currentTime - t) > 1e-6) {
    await new Promise((resolve) => { video.onseeked = resolve; video.currentTime = t; });
  }
  await drawInput(video, video.videoWidth, video.videoHeight);
  ui.frameLabel.textContent = `${t.toFixed(1)} s / ${video.duration.toFixed(1)} s`;
  const blob = await new Promise((resolve) => ui.input.toBlob(resolve, "image/png"));
  const base = state.name.replace(/\.[^.]*$/, "");
  const name = state.name;
  state.name = `${base}_${String(index).padStart(5, "0")}.png`;
  await process(blob, { keepCamera });
  state.name = name;
}

async function playFrames() {
  if (state.playing) { stopPlaying(); return; }
  state.playing = true;
  ui.play.textContent = "Stop";
  for (let i = Number(ui.frame.value); state.playing && i <= Number(ui.frame.max); i++) {
    ui.frame.value = String(i);
    await showFrame(i);
  }
  stopPlaying();
}

function stopPlaying() {
  state.playing = false;
  ui.play.textContent = "Play";
}

// ------------------------------------------------------------------------- downloads
function save(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

const stem = () => state.name.replace(/\.[^.]*$/, "");

async function downloadFormat(format) {
  try {
    const { data } = await requestDepth(state.blob, format, ui.invert.checked && format !== "npy" ? { invert: "true" } : {});
    save(data, `${stem()}_depth.${state.info.formats[format]}`);
  } catch (e) {
    setStatus(e.message, true);
  }
}

// ------------------------------------------------------------------------- wiring
function setStatus(text, error = false) {
  ui.status.textContent = text;
  ui.status.classList.toggle("error", error);
}

ui.file.addEventListener("change", () => openFile(ui.file.files[0]));
ui.drop.addEventListener("dragover", (e) => { e.preventDefault(); ui.drop.classList.add("over"); });
ui.drop.addEventListener("dragleave", () => ui.drop.classList.remove("over"));
ui.drop.addEventListener("drop", (e) => {
  e.preventDefault();
  ui.drop.classList.remove("over");
  openFile(e.dataTransfer.files[0]);
});
document.addEventListener("dragover", (e) => e.preventDefault());
document.addEventListener("drop", (e) => { e.preventDefault(); openFile(e.dataTransfer?.files[0]); });

async function recolour() {
  if (!state.blob) return;
  try {
    const colour = await requestColour(state.blob);
    await showColour(colour.data);
    view.update(viewOptions());
  } catch (e) {
    setStatus(e.message, true);
  }
}
ui.colormap.addEventListener("change", recolour);
ui.invert.addEventListener("change", recolour);
for (const control of [ui.mode, ui.texture, ui.relief]) {
  control.addEventListener("input", () => view.update(viewOptions()));
}
ui.frame.addEventListener("change", () => showFrame(Number(ui.frame.value)));
ui.play.addEventListener("click", playFrames);
ui.dlDepth.addEventListener("click", () => save(state.colour, `${stem()}_depth.png`));
ui.dlNpy.addEventListener("click", () => save(new Blob([state.npy]), `${stem()}_depth.npy`));
ui.dlOther.addEventListener("click", () => downloadFormat(ui.dlFormat.value));
ui.dl3d.addEventListener("click", async () => save(await view.snapshot(), `${stem()}_3d.png`));
ui.tokenForm.addEventListener("submit", (e) => {
  e.preventDefault();
  token = ui.token.value.trim();
  sessionStorage.setItem("depthcli-token", token);
  loadInfo();
});

loadInfo();
