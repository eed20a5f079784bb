// The page of deepfake-serve: upload images, show each verdict, P(Fake), the faces found (a box
// and a score each) and a Grad-CAM toggle for the selected face.
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
  if (state.info && file.size > state.info.limits.max_upload_mb * 1e6) {
    showError(card, `over the upload limit of ${state.info.limits.max_upload_mb} MB`);
    return;
  }
  const form = new FormData();
  form.append("files", file, file.name);
  try {
    const response = await fetch("/predict", { method: "POST", body: form, headers: headers() });
    if (!response.ok) {
      showError(card, await errorText(response));
      return;
    }
    const body = await response.json();
    showResult(card, file, body.results[0]);
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
