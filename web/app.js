// Minimal browser client: microphone -> PCM16 frames -> server; transcripts -> page.
import { MessageType, audioFrame, decodeFrame, helloFrame, nextSeq, parseError, parseEvent, parseReady } from "./protocol.js";

const RATE = 16000;
const $ = (id) => document.getElementById(id);
let ws = null, ctx = null, stream = null, seq = 0, sent = 0;

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

function onEvent(ev) {
  if (ev.type === "transcript_partial") $("partial").textContent = ev.text;
  if (ev.type === "transcript_final") {
    $("partial").textContent = "";
    if (ev.text) $("finals").insertAdjacentHTML("beforeend", "<p></p>");
    if (ev.text) $("finals").lastElementChild.textContent = ev.text;
  }
  if (ev.type === "speech_started") status("listening…");
  if (ev.type === "speech_stopped") status("transcribing…");
}

function onMessage(msg) {
  const frame = decodeFrame(new Uint8Array(msg.data));
  if (frame.type === MessageType.READY) status(`connected (session ${parseReady(frame.payload).session_id})`);
  else if (frame.type === MessageType.EVENT) onEvent(parseEvent(frame.payload));
  else if (frame.type === MessageType.ERROR) { const e = parseError(frame.payload); status(`${e.name}: ${e.message}`, true); }
}

async function start() {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
  } catch (e) {
    status(`no microphone: ${e.message}`, true);
    return;
  }
  ctx = new AudioContext({ sampleRate: RATE });
  await ctx.audioWorklet.addModule("capture-worklet.js");
  const node = new AudioWorkletNode(ctx, "capture");
  ctx.createMediaStreamSource(stream).connect(node);
  const token = new URLSearchParams(location.search).get("token");
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    ws.send(helloFrame({ token, input: { codec: "pcm16", sample_rate: RATE }, output: { codec: "pcm16", sample_rate: RATE }, client: "web-minimal/0.1" }, { seq }));
    seq = nextSeq(seq);
  };
  ws.onmessage = onMessage;
  ws.onclose = (e) => { if (e.code !== 1000) status(`closed (${e.code}) ${e.reason}`, e.code !== 1001); stop(); };
  ws.onerror = () => status("cannot reach the server", true);
  node.port.onmessage = ({ data }) => {
    if (ws?.readyState !== WebSocket.OPEN) return;
    const pcm = new Int16Array(data.length);
    for (let i = 0; i < data.length; i++) pcm[i] = Math.max(-1, Math.min(1, data[i])) * 32767;
    ws.send(audioFrame(new Uint8Array(pcm.buffer), { seq, timestamp: sent }));
    seq = nextSeq(seq);
    sent += pcm.length;
  };
  $("toggle").textContent = "Disconnect";
  $("toggle").className = "stop";
}

function stop() {
  ws?.close(1000);
  ws = null;
  stream?.getTracks().forEach((t) => t.stop());
  ctx?.close();
  ctx = stream = null;
  seq = sent = 0;
  $("toggle").textContent = "Connect";
  $("toggle").className = "";
}

$("toggle").onclick = () => (ws ? stop() : start());
