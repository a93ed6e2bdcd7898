// The browser client: microphone -> Opus -> server, agent audio -> speakers, events -> page.
// Reading this file top to bottom tells the story of a visit: connect (microphone, then
// session), talk (audio both ways, events), barge-in (flush), lose the server (reconnect with
// backoff), disconnect. Every device, codec and view lives in its own module.
import { Backoff } from "./backoff.js";
import { ConversationView } from "./conversation-view.js";
import { microphoneProblem, sessionProblem } from "./error-messages.js";
import { Flags } from "./protocol.js";
import { STAGES, formatMs, renderLatencyChart } from "./latency-chart.js";
import { LevelMeter } from "./level-meter.js";
import { MicEncoder, OPUS_RATE_HZ, pickCodec } from "./mic-encoder.js";
import { Microphone } from "./microphone.js";
import { VoiceSession } from "./session.js";
import { Speaker } from "./speaker.js";
import { CALL_ENDINGS, TimelineView, brief, describeCut, describeSlots, describeTurnDecision } from "./timeline-view.js";
import { createVoiceStats } from "./voice-stats.js";

const RATE_HZ = OPUS_RATE_HZ; // capture, playback and both directions of the session
const MARK_INTERVAL_MS = 100;
const JITTER_MARGIN_MS = 80;
const CLIENT_NAME = "voice-web/1.0";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const stats = createVoiceStats();
window.voiceStats = stats;

const conversation = new ConversationView($("dialogue"), $("empty-hint"));
const timeline = new TimelineView($("timeline"));
const backoff = new Backoff();
const levelMeter = new LevelMeter($("level"), [$("orb")]);

let context = null; // AudioContext, created on the first Connect (a user gesture)
let mic = null;
let codec = null;
let session = null; // the live VoiceSession, null between sessions
let speaker = null;
let encoder = null;
let markTimer = null;
let retryTimer = null;
let wanted = false; // the user asked to be connected: reconnect while true
let muted = false;
let playedBefore = 0; // samples played by speakers of earlier sessions
let decodedBefore = 0; // samples decoded by them
let lastReport = null; // latest playback worklet report
let interruptedAt = null; // performance.now() of the last interrupted event
let callEnded = null; // why the agent ended the call (call_ending), until the server closes

// ------------------------------------------------------------------ setup from the address

$("server").value = params.get("server") ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
if (params.has("token")) {
  $("token").value = params.get("token");
  params.delete("token"); // keep the secret out of the address bar, history and screenshots
  history.replaceState(null, "", `${location.pathname}${params.size ? `?${params}` : ""}${location.hash}`);
}
renderLatencyChart($("chart"), []);
const savedAgent = params.get("agent") ?? localStorage.getItem("voice.agent");
for (const radio of document.querySelectorAll("input[name=agent]")) radio.checked ||= radio.value === savedAgent;

// ------------------------------------------------------------------ connect

$("connect").addEventListener("click", () => (wanted ? disconnect() : connect()));

async function connect() {
  wanted = true;
  clearProblem();
  setStatus("connecting", "Starting the microphone…");
  $("connect").textContent = "Disconnect";
  try {
    await openAudio();
  } catch (error) {
    wanted = false;
    closeAudio();
    showProblem(microphoneProblem(error, { secure: window.isSecureContext && Boolean(navigator.mediaDevices) }));
    setStatus("error", "Microphone unavailable");
    $("connect").textContent = "Connect";
    return;
  }
  openSession();
}

async function openAudio() {
  context ??= new AudioContext({ sampleRate: RATE_HZ, latencyHint: "interactive" });
  await context.resume();
  codec ??= await pickCodec(params.get("codec"));
  mic ??= await Microphone.open(context, onMicBlock);
}

async function openSession() {
  const agent = document.querySelector("input[name=agent]:checked").value;
  const token = $("token").value.trim() || null;
  setStatus("connecting", "Connecting…");
  let player;
  try {
    player = await Speaker.create(context, { codec, marginMs: JITTER_MARGIN_MS, onReport, onError: reportError });
  } catch (error) {
    showProblem(`The audio player could not start: ${error.message}`);
    return disconnect({ keepProblem: true });
  }
  if (!wanted || session) return player.close(); // disconnected (or connected) meanwhile
  speaker = player;
  session = new VoiceSession({
    url: $("server").value.trim(),
    hello: {
      token, client: CLIENT_NAME,
      input: { codec, sample_rate: RATE_HZ }, output: { codec, sample_rate: RATE_HZ },
      options: { agent, barge_in: { echo: "aec" } }, // the browser cancels the agent's echo
    },
    on: { ready: onReady, audio: onAudio, event: onEvent, error: onServerError, rtt: onRtt, closed: onClosed },
  });
}

function onReady(ready) {
  backoff.reset();
  clearProblem();
  stats.codec = codec;
  stats.sessionId = ready.session_id;
  stats.connectedAt = performance.now();
  timeline.restart();
  timeline.add("info", `Connected to the ${ready.options?.agent ?? "default"} agent`, ready.server);
  $("fact-codec").textContent = `${codec === "opus" ? "Opus" : "PCM16"} · ${RATE_HZ / 1000} kHz`;
  $("fact-session").textContent = ready.session_id;
  encoder = new MicEncoder(codec, RATE_HZ, sendAudio, reportError);
  markTimer = setInterval(sendPlaybackMark, MARK_INTERVAL_MS);
  setStatus("live", mic.label ? `Live · ${mic.label}` : "Live");
  setActivity("listening", "Listening — go ahead and speak");
  setControlsEnabled(true);
}

// ------------------------------------------------------------------ audio out to the server

function onMicBlock({ samples, peak, rms }) {
  levelMeter.show(muted ? 0 : rms, muted ? 0 : peak);
  if (!encoder) return;
  if (muted) samples.fill(0); // keep the stream (and its clock) going: the server hears silence
  encoder.encode(samples);
}

function sendAudio(payload, timestampSamples) {
  if (session?.sendAudio(payload, timestampSamples, { first: timestampSamples === 0 })) stats.framesSent += 1;
}

function sendPlaybackMark() {
  if (!lastReport || lastReport.playedPosition === stats.lastPlaybackMark) return;
  if (session?.sendControl({ type: "playback_mark", played_samples: lastReport.playedPosition })) {
    stats.lastPlaybackMark = lastReport.playedPosition;
    stats.marksSent += 1;
  }
}

// ------------------------------------------------------------------ audio in from the server

function onAudio(frame) {
  if (!speaker) return;
  speaker.push(frame.payload, Number(frame.timestamp), { segmentEnd: Boolean(frame.flags & Flags.SEGMENT_END) });
  stats.framesReceived += 1;
  stats.lastAudioAt = performance.now();
}

function onReport(report) {
  if (report.playing && !lastReport?.playing) stats.playbackStarts.push(performance.now());
  lastReport = report;
  stats.samplesPlayed = playedBefore + report.samplesPlayed;
  stats.samplesDecoded = decodedBefore + (speaker?.samplesDecoded ?? 0);
  stats.bufferedSamples = report.buffered;
  stats.underruns = report.underruns;
  $("fact-buffer").textContent = `${Math.round((report.buffered / RATE_HZ) * 1000)} ms`;
  if (report.type === "flushed") {
    stats.flushes += 1;
    stats.discardedSamples += report.discarded;
    if (interruptedAt !== null) stats.flushLatenciesMs.push(performance.now() - interruptedAt);
    interruptedAt = null;
  }
  const orb = $("orb").dataset.activity;
  if (report.playing && orb !== "speaking") setActivity("speaking", "The agent is speaking — talk to interrupt");
  else if (!report.playing && orb === "speaking") setActivity("listening", "Listening");
}

// ------------------------------------------------------------------ events

function onEvent(event) {
  stats.events.push({ type: event.type, at: performance.now() });
  switch (event.type) {
    case "speech_started":
      setActivity("hearing", "Hearing you…");
      break;
    case "speech_stopped":
      setActivity("thinking", "Thinking…");
      break;
    case "transcript_partial":
      conversation.partial(event.utterance, event.text, event.stable_text);
      break;
    case "transcript_final":
      if (event.continues !== null && event.continues !== undefined) conversation.merge(event.continues, event.utterance);
      conversation.final(event.utterance, event.text);
      if (event.text.trim()) stats.finals.push(event.text);
      break;
    case "agent_text":
      conversation.agentText(event.turn, event.text, event.final);
      if (event.final) stats.agentTexts.push(event.text);
      break;
    case "interrupted":
      interruptedAt = performance.now();
      speaker?.flush(); // first: the user must stop hearing the agent now
      stats.interruptions.push(event);
      stats.audioBeforeCuts.push(stats.lastAudioAt);
      conversation.interrupted(event.turn, event.played_ms, event.heard_text ?? null);
      timeline.add("cut", "Interrupted", describeCut(event));
      setActivity("hearing", "Hearing you…");
      break;
    case "tool_call":
      timeline.add("tool", `Tool call · ${event.name}`, brief(event.arguments));
      break;
    case "tool_result":
      timeline.add(event.ok ? "result" : "error", `${event.ok ? "Result" : "Tool failed"} · ${event.id}`, brief(event.result));
      break;
    case "state_changed":
      timeline.add("state", `State · ${event.state}`, describeSlots(event.slots));
      break;
    case "turn_metrics":
      stats.turnMetrics.push(event);
      showLatency();
      timeline.add("turn", `Turn ${event.turn} answered`, `voice to voice ${formatMs(event.stages_ms.voice_to_voice)}`);
      break;
    case "session_options":
      timeline.add("info", "Session options", brief(event.options));
      break;
    case "end_of_turn":
      timeline.add("eot", event.complete ? "End of turn" : "Still listening", describeTurnDecision(event));
      break;
    case "backchannel":
      timeline.add("info", "Backchannel", `“${event.text || "(a sound)"}”: the reply went on`);
      break;
    case "call_ending":
      callEnded = CALL_ENDINGS[event.reason] ?? `The agent ended the call (${event.reason}).`;
      wanted = false; // the agent hung up: no reconnect when the server closes
      timeline.add("cut", "Call ending", callEnded);
      break;
    default: // input_ended and types newer than this page: nothing to show
  }
}

function onServerError(error) {
  if (error.fatal) return; // the close that follows explains it
  reportError(new Error(`${error.name ?? error.code}: ${error.message}`));
}

function onRtt(ms) {
  stats.rttMs = ms;
  $("fact-rtt").textContent = `${Math.round(ms)} ms`;
}

function reportError(error) {
  stats.errors.push(String(error?.message ?? error));
  timeline.add("error", "Problem", String(error?.message ?? error));
}

// ------------------------------------------------------------------ the end of a session

function onClosed({ code, reason, opened, ready }) {
  endSession();
  if (callEnded) {
    disconnect();
    setStatus("idle", "Call ended");
    setActivity("idle", callEnded);
    callEnded = null;
    return;
  }
  if (!wanted) return;
  const problem = sessionProblem({ code: code === 1000 ? 1006 : code, reason, opened: opened && ready, url: $("server").value });
  if (ready) timeline.add("error", "Disconnected", problem.message);
  if (!problem.retry) {
    showProblem(problem.message);
    disconnect({ keepProblem: true });
    return;
  }
  const delayMs = backoff.next();
  showProblem(`${problem.message} Reconnecting in ${(delayMs / 1000).toFixed(1)} s (attempt ${backoff.attempt})…`, true);
  setStatus("connecting", "Reconnecting…");
  setActivity("idle", "Waiting for the server…");
  retryTimer = setTimeout(retry, delayMs);
}

function retry() {
  clearTimeout(retryTimer);
  retryTimer = null;
  if (wanted && !session) openSession();
}
$("retry-now").addEventListener("click", () => {
  clearProblem();
  if (wanted) retry();
  else connect();
});

function endSession() {
  clearInterval(markTimer);
  if (speaker) {
    playedBefore += lastReport?.samplesPlayed ?? 0;
    decodedBefore += speaker.samplesDecoded;
  }
  speaker?.close();
  encoder?.close();
  session = speaker = encoder = lastReport = null;
  markTimer = null;
  stats.lastPlaybackMark = null; // marks count per session
  setControlsEnabled(false);
  setActivity("idle", "Press Connect, then speak");
}

/** Our side ends the session: BYE, without the reconnect that a lost connection gets. */
function closeSession() {
  const live = session;
  endSession();
  if (!live) return;
  live.on = {};
  live.close();
}

function disconnect({ keepProblem = false } = {}) {
  wanted = false;
  clearTimeout(retryTimer);
  closeSession();
  closeAudio();
  if (!keepProblem) clearProblem();
  setStatus(keepProblem ? "error" : "idle", keepProblem ? "Not connected" : "Disconnected");
  $("connect").textContent = "Connect";
}

function closeAudio() {
  mic?.close();
  mic = null;
  levelMeter.show(0, 0);
}

// ------------------------------------------------------------------ controls

$("mute").addEventListener("click", () => {
  muted = !muted;
  $("mute").setAttribute("aria-pressed", String(muted));
  $("mute").textContent = muted ? "Unmute" : "Mute";
});

$("settings").addEventListener("submit", (e) => e.preventDefault());
$("stop").addEventListener("click", () => session?.sendControl({ type: "interrupt" }));

$("typed").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("message").value.trim();
  if (!text || !session?.sendControl({ type: "text", text })) return;
  speaker?.flush(); // the server starts a new reply: stop the old one here too
  conversation.typed(text);
  $("message").value = "";
});

for (const radio of document.querySelectorAll("input[name=agent]")) {
  radio.addEventListener("change", () => {
    localStorage.setItem("voice.agent", radio.value);
    if (!session) return;
    timeline.add("info", `Switching to the ${radio.value} agent`);
    closeSession();
    openSession();
  });
}

// ------------------------------------------------------------------ page state

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status-text").textContent = text;
}

function setActivity(activity, text) {
  $("orb").dataset.activity = activity;
  $("activity").textContent = text;
}

function setControlsEnabled(on) {
  for (const id of ["mute", "stop", "message"]) $(id).disabled = !on;
  $("typed").querySelector("button").disabled = !on;
}

function showProblem(message, canRetry = false) {
  if (message) stats.errors.push(message);
  $("problem").hidden = !message;
  $("problem-text").textContent = message;
  $("retry-now").hidden = !canRetry;
}

function clearProblem() {
  showProblem("");
}

function showLatency() {
  const last = stats.turnMetrics.at(-1).stages_ms;
  for (const key of [...STAGES.map((s) => s.key), "voice_to_voice"]) {
    const tile = $(`lat-${key}`);
    if (tile) tile.textContent = formatMs(last[key]);
  }
  renderLatencyChart($("chart"), stats.turnMetrics);
  const v2v = stats.turnMetrics.map((t) => formatMs(t.stages_ms.voice_to_voice)).join(", ");
  $("chart").setAttribute("aria-label", `Voice-to-voice latency of recent turns: ${v2v}`);
}
