// The voice page: microphone → /voice/ws (16 kHz PCM), bot audio back and played, live transcript and timings.
"use strict";

const RATE = 16000;
const $ = (id) => document.getElementById(id);
let socket = null;
let audio = null;      // AudioContext at 16 kHz: the browser resamples the microphone for us
let micStream = null;
let playAt = 0;        // when the next bot chunk starts, in AudioContext time
let playing = [];      // scheduled sources, stopped on barge-in
let turn = 0;

function setStatus(text) { $("status").textContent = text; }

function addLine(kind, text) {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = text;
  $("log").appendChild(li);
  li.scrollIntoView({ block: "nearest" });
}

function fmt(ms) { return ms === null || ms === undefined ? "–" : Math.round(ms); }

function addTimings(m) {
  const row = document.createElement("tr");
  turn += 1;
  for (const value of [turn, fmt(m.stt_ms), fmt(m.rasa_ms), fmt(m.tts_first_audio_ms), fmt(m.voice_to_voice_ms)]) {
    const cell = document.createElement("td");
    cell.textContent = value;
    row.appendChild(cell);
  }
  $("timings").querySelector("tbody").appendChild(row);
}

function playChunk(buffer) {
  const pcm = new Int16Array(buffer);
  const frame = audio.createBuffer(1, pcm.length, RATE);
  const data = frame.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 0x8000;
  const source = audio.createBufferSource();
  source.buffer = frame;
  source.connect(audio.destination);
  // The server paces chunks in real time; a small lead absorbs network jitter.
  playAt = Math.max(playAt, audio.currentTime + 0.04);
  source.start(playAt);
  playAt += frame.duration;
  playing.push(source);
  source.onended = () => { playing = playing.filter((s) => s !== source); };
}

function clearPlayback() {
  for (const source of playing) { try { source.stop(); } catch (e) { /* already stopped */ } }
  playing = [];
  playAt = 0;
}

function onEvent(event) {
  switch (event.type) {
    case "ready": setStatus(`in call ${event.call_id}` + (event.asr_available ? "" : " (keypad only: no ASR model)")); break;
    case "partial": $("partial").textContent = event.text; break;
    case "caller": $("partial").textContent = "…"; addLine("caller", event.text); break;
    case "bot": addLine("bot", event.texts.join(" ")); break;
    case "clear": clearPlayback(); break;
    case "barge_in": addLine("info", "(barge-in)"); break;
    case "metrics":
      if (event.greeting_first_audio_ms !== undefined) $("greeting").textContent = `greeting first audio: ${fmt(event.greeting_first_audio_ms)} ms`;
      else addTimings(event);
      break;
    case "handoff": addLine("info", `→ transfer to queue ${event.queue} (${event.reason})`); break;
    case "hangup": addLine("info", "(the bot hung up)"); break;
    case "ended": addLine("info", `call ended: ${event.outcome}`); break;
    case "error": addLine("info", `error: ${event.error}`); break;
    case "busy": addLine("info", "the line is busy (the gateway takes no more calls now): try again later"); break;
  }
}

async function startCall() {
  $("call").disabled = true;
  try {
    audio = new AudioContext({ sampleRate: RATE });
    await audio.audioWorklet.addModule("/voice/static/voice-worklet.js");
    micStream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (err) {
    setStatus(`microphone unavailable: ${err.message}`);
    $("call").disabled = false;
    return;
  }
  const mic = audio.createMediaStreamSource(micStream);
  const capture = new AudioWorkletNode(audio, "mic-capture");
  mic.connect(capture);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/voice/ws?caller=${encodeURIComponent($("caller").value)}`);
  socket.binaryType = "arraybuffer";
  capture.port.onmessage = (msg) => { if (socket && socket.readyState === WebSocket.OPEN) socket.send(msg.data); };
  socket.onopen = () => { setStatus("connecting…"); $("hangup").disabled = false; };
  socket.onmessage = (msg) => {
    if (typeof msg.data === "string") onEvent(JSON.parse(msg.data));
    else playChunk(msg.data);
  };
  let opened = false;
  socket.addEventListener("open", () => { opened = true; });
  // A refused handshake (wrong origin, missing console token) closes before opening: say so, not "call ended".
  socket.onclose = () => endCall(opened ? "call ended" : "the gateway refused the call (reload the page; it may need ?token=)");
}

function endCall(status) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "hangup" }));
  socket = null;
  if (micStream) micStream.getTracks().forEach((t) => t.stop());
  micStream = null;
  setTimeout(() => { if (audio) { audio.close(); audio = null; } }, 1500);
  setStatus(status);
  $("call").disabled = false;
  $("hangup").disabled = true;
}

$("call").addEventListener("click", startCall);
$("hangup").addEventListener("click", () => endCall("hung up"));
document.querySelectorAll(".keypad button").forEach((button) => {
  button.addEventListener("click", () => {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "dtmf", key: button.textContent }));
  });
});
