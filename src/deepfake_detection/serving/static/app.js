// The page of deepfake-serve: upload images and videos, show each verdict, P(Fake), the faces
// found (a box and a score each) and a Grad-CAM toggle for the selected face; for a video, a
// timeline of its frame scores and its highest-scoring frame, with its faces and Grad-CAM.
"use strict";

const state = { auth: false, info: null };

function apiKey() {
  return document.getElementById("api-key").value.trim();
}

function headers() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function errorText(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

function showPageError(text) {
  const box = document.getElementById("page-error");
  box.textContent = text;
  box.hidden = !text;
}

async function loadInfo() {
  const health = await fetch("/health").then((r) => r.json());
  state.auth = health.auth;
  document.getElementById("key-row").hidden = !state.auth;
  const response = await fetch("/info", { headers: headers() });
  const line = document.getElementById("model-info");
  if (!response.ok) {
    line.textContent = state.auth ? "Enter the API key to use this service." : await errorText(response);
    return;
  }
  state.info = await response.json();
  const i = state.info;
  line.textContent = `${i.model} (${i.backend}), ${i.image_size} px; Fake when P(Fake) > ${i.threshold.toFixed(4)}` +
    ` (${i.threshold_rule}).`;
}

function addCard(file) {
  const card = document.getElementById("result-template").content.firstElementChild.cloneNode(true);
  card.querySelector(".file-name").textContent = file.name;
  const thumb = card.querySelector(".thumb");
  thumb.addEventListener("error", () => card.querySelector(".picture").classList.add("no-preview"));
  thumb.src = URL.createObjectURL(file);
  thumb.alt = file.name;
  card.dataset.original = thumb.src;
  document.getElementById("results").prepend(card);
  return card;
}

function showError(card, text) {
  card.dataset.state = "error";
  card.querySelector(".verdict").textContent = "Rejected";
  const message = card.querySelector(".message");
  message.textContent = text;
  message.hidden = false;
}

function showNote(card, text) {
  const note = card.querySelector(".note");
  note.textContent = text || "";
  note.hidden = !text;
}

function selectFace(card, file, number) {
  card.dataset.face = String(number);
  for (const element of card.querySelectorAll(".box, .faces li")) {
    element.classList.toggle("selected", element.dataset.face === String(number));
  }
  if (card.querySelector(".cam-toggle").checked) {
    delete card.dataset.heatmap;
    toggleHeatmap(card, file, true);
  }
}

function showFaces(card, file, result) {
  const boxes = card.querySelector(".boxes");
  const list = card.querySelector(".faces");
  boxes.replaceChildren();
  list.replaceChildren();
  result.faces.forEach((face, number) => {
    const [x, y, w, h] = face.box;
    const text = `${face.label} ${face.prob_fake.toFixed(3)}`;
    const box = document.createElement("div");
    box.className = "box";
    box.dataset.face = String(number);
    box.dataset.label = face.label;
    box.title = `face ${number + 1}: P(Fake) = ${face.prob_fake.toFixed(4)}`;
    box.style.left = `${(100 * x) / result.width}%`;
    box.style.top = `${(100 * y) / result.height}%`;
    box.style.width = `${(100 * w) / result.width}%`;
    box.style.height = `${(100 * h) / result.height}%`;
    const tag = document.createElement("span");
    tag.textContent = `${number + 1}: ${text}`;
    box.append(tag);
    box.addEventListener("click", () => selectFace(card, file, number));
    boxes.append(box);
    const item = document.createElement("li");
    item.dataset.face = String(number);
    item.dataset.label = face.label;
    item.textContent = `Face ${number + 1}: ${text} (${(100 * face.area).toFixed(1)} % of the image)`;
    item.addEventListener("click", () => selectFace(card, file, number));
    list.append(item);
  });
  list.hidden = result.faces.length === 0;
  if (result.faces.length) selectFace(card, file, 0);
}

function showResult(card, file, result) {
  card.dataset.state = result.label;
  showNote(card, result.note);
  if (result.prob_fake === null) {  // no face, and the service leaves such pictures out
    card.querySelector(".verdict").textContent = "No face";
    return;
  }
  card.dataset.prob = String(result.prob_fake);
  showFaces(card, file, result);
  card.querySelector(".verdict").textContent =
    result.faces.length > 1 ? `${result.label} (${result.faces.length} faces)` : result.label;
  card.querySelector(".bar-fill").style.width = `${(100 * result.prob_fake).toFixed(1)}%`;
  card.querySelector(".bar-mark").style.left = `${(100 * result.threshold).toFixed(1)}%`;
  card.querySelector(".prob").textContent =
    `P(Fake) = ${result.prob_fake.toFixed(4)} (threshold ${result.threshold.toFixed(4)})`;
  if (!state.info || state.info.explain) {
    card.querySelector(".cam-label").hidden = false;
  }
}

const SVG = "http://www.w3.org/2000/svg";

function svgElement(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

// P(Fake) of each sampled frame against time (0 to 300 across, 1 at the top), the threshold as
// a dashed line, the highest-scoring frame in red.
function drawTimeline(card, result) {
  const figure = card.querySelector(".timeline");
  const svg = figure.querySelector("svg");
  svg.replaceChildren();
  const scored = result.frames.filter((frame) => frame.prob_fake !== null);
  const end = Math.max(result.duration_s, ...result.frames.map((frame) => frame.time), 1e-6);
  const x = (time) => (300 * time) / end;
  const y = (prob) => 100 - 100 * prob;
  svg.append(svgElement("line", {
    class: "threshold", x1: 0, x2: 300, y1: y(result.threshold), y2: y(result.threshold),
  }));
  svg.append(svgElement("polyline", {
    points: scored.map((frame) => `${x(frame.time).toFixed(2)},${y(frame.prob_fake).toFixed(2)}`).join(" "),
  }));
  for (const frame of scored) {
    const top = result.top_frame && frame.time === result.top_frame.time;
    const dot = svgElement("circle", {
      cx: x(frame.time), cy: y(frame.prob_fake), r: top ? 3 : 1.6, class: top ? "top" : "frame",
    });
    const title = svgElement("title", {});
    title.textContent = `${frame.time.toFixed(2)} s: P(Fake) = ${frame.prob_fake.toFixed(4)}`;
    dot.append(title);
    svg.append(dot);
  }
  figure.querySelector("figcaption").textContent =
    `P(Fake) of ${scored.length} frames over ${result.duration_s.toFixed(1)} s ` +
    `(${result.aggregate}: ${result.prob_fake.toFixed(3)}); dashed: the threshold`;
  figure.hidden = false;
}

function dataUrlToFile(url, name) {
  const [head, data] = url.split(",");
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  return new File([bytes], name, { type: head.slice(5, head.indexOf(";")) });
}

function showVideoResult(card, result) {
  card.dataset.state = result.label;
  card.dataset.kind = "video";
  card.dataset.prob = String(result.prob_fake);
  const top = result.top_frame;
  const frameFile = dataUrlToFile(top.image, `frame-${top.index}.jpg`);
  const thumb = card.querySelector(".thumb");
  card.querySelector(".picture").classList.remove("no-preview");
  thumb.src = top.image;
  card.dataset.original = top.image;
  delete card.dataset.heatmap;
  const cam = card.querySelector(".cam-toggle");
  cam.replaceWith(cam.cloneNode(true));  // Grad-CAM now asks about the frame, not the clip
  card.querySelector(".cam-toggle").addEventListener("change", (event) => {
    toggleHeatmap(card, frameFile, event.target.checked);
  });
  const call = (prob) => (prob > result.threshold ? "Fake" : "Real");
  const faces = top.faces.map((face) => ({ ...face, label: call(face.prob_fake) }));
  showFaces(card, frameFile, { ...top, faces });
  card.querySelector(".verdict").textContent = `${result.label} (video, ${result.frames_used} frames)`;
  card.querySelector(".bar-fill").style.width = `${(100 * result.prob_fake).toFixed(1)}%`;
  card.querySelector(".bar-mark").style.left = `${(100 * result.threshold).toFixed(1)}%`;
  card.querySelector(".prob").textContent =
    `P(Fake) = ${result.prob_fake.toFixed(4)} (threshold ${result.threshold.toFixed(4)}); ` +
    `shown: the highest-scoring frame, at ${top.time.toFixed(2)} s (${top.prob_fake.toFixed(3)})`;
  drawTimeline(card, result);
  const notes = [result.note];
  if (result.frames_without_face) notes.push(`${result.frames_without_face} frame(s) without a face`);
  showNote(card, [...new Set(notes.filter(Boolean))].join("; "));
  if (!state.info || state.info.explain) {
    card.querySelector(".cam-label").hidden = false;
  }
}

async function toggleHeatmap(card, file, checked) {
  const thumb = card.querySelector(".thumb");
  if (!checked) {
    thumb.src = card.dataset.original;
    card.dataset.cam = "off";
    return;
  }
  if (!card.dataset.heatmap) {
    const form = new FormData();
    form.append("files", file, file.name);
    if (card.dataset.face) form.append("face", card.dataset.face);
    const response = await fetch("/explain", { method: "POST", body: form, headers: headers() });
    if (!response.ok) {
      card.querySelector(".cam-toggle").checked = false;
      const message = card.querySelector(".message");
      message.textContent = `Grad-CAM: ${await errorText(response)}`;
      message.hidden = false;
      return;
    }
    card.dataset.heatmap = URL.createObjectURL(await response.blob());
  }
  thumb.src = card.dataset.heatmap;
  card.dataset.cam = "on";
}

async function score(file) {
  const card = addCard(file);
  card.querySelector(".cam-toggle").addEventListener("change", (event) => {
    toggleHeatmap(card, file, event.target.checked);
  });
  // Some systems give clips no type (an .mkv, say): their name tells then.
  const isVideo = file.type.startsWith("video/") || /\.(mp4|mov|m4v|webm|avi|mkv)$/i.test(file.name);
  const limit = state.info && (isVideo ? state.info.limits.max_video_mb : state.info.limits.max_upload_mb);
  if (limit && file.size > limit * 1e6) {
    showError(card, `over the upload limit of ${limit} MB`);
    return;
  }
  if (isVideo) card.querySelector(".verdict").textContent = "Scoring the video…";
  const form = new FormData();
  form.append("files", file, file.name);
  try {
    const response = await fetch("/predict", { method: "POST", body: form, headers: headers() });
    if (!response.ok) {
      showError(card, await errorText(response));
      return;
    }
    const body = await response.json();
    const result = body.results[0];
    if (result.kind === "video") showVideoResult(card, result);
    else showResult(card, file, result);
  } catch (error) {
    showError(card, `the service did not answer (${error})`);
  }
}

function handleFiles(files) {
  showPageError("");
  if (!files.length) {
    showPageError("No files were dropped.");
    return;
  }
  for (const file of files) {
    score(file);
  }
}

function setup() {
  const zone = document.getElementById("drop-zone");
  const input = document.getElementById("file-input");
  input.addEventListener("change", () => {
    handleFiles(Array.from(input.files));
    input.value = "";
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    handleFiles(Array.from(event.dataTransfer.files));
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") input.click();
  });
  document.getElementById("api-key").addEventListener("change", loadInfo);
  loadInfo().catch((error) => showPageError(`Cannot reach the service: ${error}`));
}

document.addEventListener("DOMContentLoaded", setup);
