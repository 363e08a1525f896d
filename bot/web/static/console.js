// The text console: talks to the gateway's /console/api, which talks the call contract to Rasa.
// Plain JS, no build step, no CDN. Bot text is only ever inserted with textContent.
"use strict";

const state = { callId: null, expect: null, ended: false, turnNo: 0, busy: false };
const $ = (id) => document.getElementById(id);
const MASK = "••••••";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setStatus(kind, text) {
  const status = $("status");
  status.className = "status " + kind;
  status.textContent = text;
}

function callerNumber() {
  return $("caller").value.trim();
}

function secureExpected() {
  return Boolean(state.expect && state.expect.secure);
}

// Secure input (PIN): hidden field, masked transcript, masked keypad display.
function applyExpect(expect) {
  state.expect = expect || null;
  const secure = secureExpected();
  $("message").type = secure ? "password" : "text";
  $("message").placeholder = secure ? "密码（隐藏）PIN, hidden" : "说点什么… type what the caller says";
  $("secure-hint").hidden = !secure;
  renderKeypadBuffer();
}

async function api(path, body) {
  let response;
  try {
    // JSON only and same-origin cookies only: the gateway refuses anything else (CSRF), and the session
    // cookie it set with this page is what lets this browser address its own calls and no others.
    response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (err) {
    throw new Error("The gateway is not reachable: " + err.message);
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    throw new Error("The gateway answered " + response.status + " without JSON.");
  }
  if (response.status === 401) throw new Error((data && data.error) || "This console needs its token.");
  if (response.status === 404 && state.callId) {
    // The gateway no longer knows this call for this browser (restarted, or the session expired).
    state.ended = true;
    setStatus("ended", "通话已失效 call no longer known · start a new call");
  }
  if (!response.ok) throw new Error(data && data.error ? data.error : "Error " + response.status);
  return data;
}

function addCallerLine(text) {
  const row = el("div", "turn caller");
  row.appendChild(el("div", "bubble", text === "" ? "（静默 silence）" : text));
  $("transcript").appendChild(row);
  scrollTranscript();
}

function eventLabel(event) {
  switch (event.event) {
    case "handoff": return `转人工 handoff → ${event.queue} (priority ${event.priority}, ${event.reason})`;
    case "hangup": return "挂机 hangup";
    case "speech_rate": return `语速 speech_rate ${event.rate}`;
    case "expect": return `等待输入 expect ${event.input} ≤${event.max_length}${event.secure ? " · secure" : ""}`;
    case "interruptible": return `interruptible ${event.value}`;
    default: return JSON.stringify(event);
  }
}

function addBotTurn(turn) {
  const row = el("div", "turn bot");
  const bubble = el("div", "bubble");
  turn.items.forEach((item) => {
    if (item.text) bubble.appendChild(el("div", "bot-text", item.text));
    if (item.custom && item.custom.event) {
      bubble.appendChild(el("span", "event " + item.custom.event, eventLabel(item.custom)));
    }
  });
  if (!turn.items.length) bubble.appendChild(el("div", "bot-text muted", "（无回复 no reply）"));
  row.appendChild(bubble);
  $("transcript").appendChild(row);
  scrollTranscript();
}

function scrollTranscript() {
  const transcript = $("transcript");
  transcript.scrollTop = transcript.scrollHeight;
}

function debugRow(table, name, lines) {
  const row = el("tr");
  row.appendChild(el("th", "", name));
  const cell = el("td");
  cell.appendChild(el("pre", "", lines.length ? lines.join("\n") : "–"));
  row.appendChild(cell);
  table.appendChild(row);
}

const show = (value) => (typeof value === "string" ? value : JSON.stringify(value));
const entityLines = (entities) => entities.map((e) => `${e.entity} = ${show(e.value)}  (${e.extractor || "?"})`);
const slotLines = (slots) => Object.entries(slots).map(([name, value]) => `${name}: ${show(value)}`);
const eventLines = (events) => events.map((e) => show(e));

function addDebug(turn, label) {
  state.turnNo += 1;
  const debug = turn.debug || {};
  const details = el("details", "turn-debug");
  details.open = true;
  const confidence = typeof debug.confidence === "number" ? debug.confidence.toFixed(3) : "–";
  details.appendChild(el("summary", "", `#${state.turnNo} ${label} → ${debug.intent || "?"} (${confidence})`));
  const table = el("table");
  if (debug.error) debugRow(table, "error", [debug.error]);
  debugRow(table, "intent", [debug.intent || "–"]);
  debugRow(table, "confidence", [confidence]);
  debugRow(table, "entities", entityLines(debug.entities || []));
  debugRow(table, "slots", slotLines(debug.slots || {}));
  debugRow(table, "actions", [(debug.actions || []).join(" → ")].filter(Boolean));
  debugRow(table, "events", eventLines(turn.events || []));
  if (debug.active_loop) debugRow(table, "active form", [debug.active_loop]);
  details.appendChild(table);
  const column = $("debug");
  column.querySelectorAll("details").forEach((d) => { d.open = false; });
  column.prepend(details);
}

function handleTurn(turn, label) {
  addBotTurn(turn);
  addDebug(turn, label);
  applyExpect(turn.expect);
  if (turn.ended) {
    state.ended = true;
    setStatus("ended", "通话结束 call ended · " + state.callId);
  }
}

async function run(label, path, body, transcriptText) {
  if (state.busy) return;
  showError("");
  if (transcriptText !== null) addCallerLine(transcriptText);
  state.busy = true;
  try {
    const turn = await api(path, body);
    handleTurn(turn, label);
    return turn;
  } catch (err) {
    showError(err.message);
  } finally {
    state.busy = false;
  }
}

async function newCall() {
  const caller = callerNumber();
  $("transcript").replaceChildren();
  $("debug").replaceChildren();
  Object.assign(state, { callId: null, expect: null, ended: false, turnNo: 0 });
  applyExpect(null);
  keypadBuffer = "";
  renderKeypadBuffer();
  setStatus("idle", "接通中 connecting…");
  const turn = await run("/call_start", "/console/api/calls", { caller_number: caller }, null);
  if (turn) {
    state.callId = turn.call_id;
    if (!state.ended) setStatus("live", `通话中 live · ${caller || "no caller id"} · ${turn.call_id}`);
  } else {
    setStatus("idle", "未通话 · no call");
  }
}

function requireCall() {
  if (!state.callId) {
    showError("先开始通话 Start a call first (新通话 New call).");
    return false;
  }
  return true;
}

async function sendText(event) {
  event.preventDefault();
  if (!requireCall()) return;
  const input = $("message");
  const text = input.value;
  const secure = secureExpected();
  input.value = "";
  const path = `/console/api/calls/${encodeURIComponent(state.callId)}/messages`;
  await run(secure ? "secure text" : "text", path,
    { caller_number: callerNumber(), text, secure }, secure ? MASK : text);
  input.focus();
}

let keypadBuffer = "";

function renderKeypadBuffer() {
  $("keypad-buffer").textContent = secureExpected() ? "•".repeat(keypadBuffer.length) : keypadBuffer;
}

async function pressKey(key) {
  if (key !== "#") {
    if (keypadBuffer.length < 32) keypadBuffer += key;
    renderKeypadBuffer();
    return;
  }
  if (!requireCall()) return;
  const digits = keypadBuffer || "#";  // '#' ends the gathering, like on a phone
  keypadBuffer = "";
  renderKeypadBuffer();
  const secure = secureExpected();
  const path = `/console/api/calls/${encodeURIComponent(state.callId)}/dtmf`;
  const body = { caller_number: callerNumber(), digits, secure, expecting_digits: Boolean(state.expect) };
  await run(secure ? "keypad (secure)" : "keypad " + digits, path, body, "⌨ " + (secure ? MASK : digits));
}

function selectCaller(number) {
  $("caller").value = number;
  document.querySelectorAll(".quick-caller").forEach((b) => b.classList.toggle("selected", b.dataset.number === number));
}

document.addEventListener("DOMContentLoaded", () => {
  $("new-call").addEventListener("click", newCall);
  $("composer").addEventListener("submit", sendText);
  document.querySelectorAll(".quick-caller").forEach((button) =>
    button.addEventListener("click", () => selectCaller(button.dataset.number)));
  document.querySelectorAll(".key").forEach((button) =>
    button.addEventListener("click", () => pressKey(button.dataset.key)));
  $("keypad-clear").addEventListener("click", () => { keypadBuffer = ""; renderKeypadBuffer(); });
  selectCaller(callerNumber());
});
