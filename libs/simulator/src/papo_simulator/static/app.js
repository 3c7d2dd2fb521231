"use strict";
// The simulator's page: one open chat, live updates by server-sent events, no build step.
const $ = (id) => document.getElementById(id);
const state = { world: null, instance: null, number: null, chat: null, previews: {} };

async function api(path, options = {}) {
  const response = await fetch(path, { headers: { "content-type": "application/json" }, ...options });
  if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
  return response.json();
}

const clock = (epochSeconds) =>
  new Date(epochSeconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
const initials = (name) => name.split(/\s+/).map((part) => part[0]).join("").slice(0, 2).toUpperCase();
const contact = () => state.world.contacts.find((c) => c.number === state.number);
const instance = () => state.world.instances.find((i) => i.name === state.instance);

function ticks(message) {
  if (message.author !== "contact") return "";
  const marks = { sending: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "!" };
  const label = { sending: "sending", sent: "sent", delivered: "delivered", read: "read", failed: "not delivered" };
  return `<span class="ticks ${message.status}" aria-label="${label[message.status]}">${marks[message.status]}</span>`;
}

function bubble(message) {
  const element = document.createElement("div");
  element.className = `bubble ${message.author}`;
  element.dataset.id = message.id;
  const who = { contact: contact().name, bot: `papo · ${instance().label}`, operator: `${instance().label} (operator)` };
  const name = document.createElement("span");
  name.className = "who";
  name.textContent = who[message.author];
  element.append(name);
  if (message.kind === "audio") {
    const audio = document.createElement("audio");
    audio.controls = true;
    if (message.audio_url) audio.src = message.audio_url;
    audio.setAttribute("aria-label", "Voice note");
    element.append(audio);
  } else {
    element.append(document.createTextNode(message.text));
  }
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.innerHTML = `${clock(message.at)} ${ticks(message)}`;
  element.append(meta);
  return element;
}

function renderLog() {
  const log = $("log");
  log.replaceChildren(...state.chat.messages.map(bubble));
  log.scrollTop = log.scrollHeight;
}

function renderStatus() {
  const status = $("chat-status");
  const typing = state.chat && state.chat.typing;
  const paused = state.chat && state.chat.paused;
  const idle = `+${state.number} · writing to ${instance().label} (+${instance().number})`;
  status.textContent = typing ? "typing…" : paused ? `papo is paused (${paused.replace("_", " ")})` : idle;
  status.classList.toggle("typing", Boolean(typing));
}

function renderTimeline() {
  const turns = $("turns");
  turns.replaceChildren(
    ...state.chat.timeline.map((turn, index) => {
      const item = document.createElement("li");
      item.className = "turn";
      const title = document.createElement("h3");
      title.textContent = `Turn ${index + 1} · ${turn.message_ids.length} message${turn.message_ids.length === 1 ? "" : "s"}`;
      item.append(title);
      for (const step of turn.steps) {
        const row = document.createElement("div");
        row.className = "step";
        const time = document.createElement("time");
        time.textContent = step.at ? clock(step.at) : "";
        const text = document.createElement("span");
        text.className = "label";
        text.textContent = step.label;
        const detail = document.createElement("span");
        detail.className = "detail";
        detail.textContent = step.detail;
        text.append(detail);
        row.append(time, text);
        item.append(row);
      }
      return item;
    }),
  );
  turns.scrollIntoView({ block: "end" });
}

function renderContacts() {
  const list = $("contacts");
  list.replaceChildren(
    ...state.world.contacts.map((c) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.setAttribute("aria-current", String(c.number === state.number));
      button.innerHTML = `<span class="avatar" aria-hidden="true">${initials(c.name)}</span><span><strong></strong><span class="preview"></span></span>`;
      button.querySelector("strong").textContent = c.name;
      button.querySelector(".preview").textContent = state.previews[`${state.instance}/${c.number}`] || `+${c.number}`;
      button.addEventListener("click", () => openChat(state.instance, c.number));
      item.append(button);
      return item;
    }),
  );
}

async function refreshChat() {
  const opened = `${state.instance}/${state.number}`;
  const chat = await api(`/api/chats/${state.instance}/${state.number}`);
  if (opened !== `${state.instance}/${state.number}`) return;
  state.chat = chat;
  renderLog();
  renderStatus();
  renderTimeline();
}

let pending = null;
function scheduleRefresh() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refreshChat(); }, 50);
}

async function openChat(instanceName, number) {
  state.instance = instanceName;
  state.number = number;
  $("chat-name").textContent = contact().name;
  $("chat-avatar").textContent = initials(contact().name);
  renderContacts();
  await refreshChat();
  $("composer").focus();
}

async function sendText() {
  const composer = $("composer");
  const text = composer.value.trim();
  if (!text) return;
  composer.value = "";
  const asOperator = $("as-operator").checked;
  await api(`/api/chats/${state.instance}/${state.number}/messages`, {
    method: "POST",
    body: JSON.stringify({ text, as_operator: asOperator }),
  });
  composer.focus();
}

const toBase64 = (blob) =>
  new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });

async function sendVoiceNote(blob, mimetype, seconds) {
  await api(`/api/chats/${state.instance}/${state.number}/voice-notes`, {
    method: "POST",
    body: JSON.stringify({ base64: await toBase64(blob), mimetype, seconds }),
  });
}

let recorder = null;
async function toggleRecording() {
  const button = $("record");
  if (recorder) { recorder.stop(); return; }
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  // WhatsApp's voice notes are OGG/Opus; a browser that cannot record OGG records WebM/Opus
  const type = ["audio/ogg;codecs=opus", "audio/webm;codecs=opus"].find((t) => MediaRecorder.isTypeSupported(t));
  recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
  const chunks = [];
  const started = performance.now();
  recorder.ondataavailable = (event) => chunks.push(event.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((track) => track.stop());
    const mimetype = (recorder.mimeType || "audio/ogg;codecs=opus").replace(";", "; ");
    recorder = null;
    button.setAttribute("aria-pressed", "false");
    await sendVoiceNote(new Blob(chunks, { type: mimetype }), mimetype, (performance.now() - started) / 1000);
  };
  recorder.start();
  button.setAttribute("aria-pressed", "true");
}

function listen() {
  const events = new EventSource("/api/events");
  events.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "hello") return;
    const key = `${event.instance}/${event.number}`;
    if (event.type === "message") {
      state.previews[key] = event.message.kind === "audio" ? "Voice note" : event.message.text;
      renderContacts();
    }
    if (key !== `${state.instance}/${state.number}`) return;
    if (event.type === "typing" && state.chat) {
      state.chat.typing = event.typing;
      renderStatus();
    }
    scheduleRefresh();
  };
}

async function start() {
  state.world = await api("/api/world");
  const select = $("instance");
  for (const i of state.world.instances) {
    const option = document.createElement("option");
    option.value = i.name;
    option.textContent = `${i.label} (+${i.number})`;
    select.append(option);
  }
  select.addEventListener("change", () => openChat(select.value, state.number));
  $("timeline-source").textContent = state.world.papo_history
    ? "Times seen on the wire here, joined with what papo stored in PostgreSQL (read through ingest's admin API)."
    : "Times seen on the wire here (set PAPO_ADMIN_TOKEN to add what papo stored: transcripts, model answers).";
  $("composer").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); sendText(); }
  });
  $("composer-form").addEventListener("submit", (event) => { event.preventDefault(); sendText(); });
  $("as-operator").addEventListener("change", (event) => {
    $("composer-form").classList.toggle("as-operator", event.target.checked);
  });
  $("voice-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (file) await sendVoiceNote(file, file.type || "audio/ogg; codecs=opus", null);
    event.target.value = "";
  });
  $("record").addEventListener("click", toggleRecording);
  listen();
  await openChat(state.world.instances[0].name, state.world.contacts[0].number);
}

start();
