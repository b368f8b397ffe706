// The console page: wires the protocol client, microphone capture and playback together. The three
// modules know nothing of each other; everything that connects them lives here.

import { AudioCapture } from "./audio-capture.js";
import { AudioPlayback } from "./audio-playback.js";
import { RealtimeClient } from "./realtime-client.js";

const config = JSON.parse(document.getElementById("console-config").textContent);
const $ = (id) => document.getElementById(id);
const RATE = 24000; // PCM16 24 kHz in both directions (the protocol's default format)
const LOG_MAX = 5000; // events kept for the download
const LOG_DOM_MAX = 400; // events shown at once
const AUDIO_EVENTS = new Set(["input_audio_buffer.append", "response.output_audio.delta", "response.audio.delta"]);

// Noise suppression and automatic gain off: the local agent's recogniser hears clipped, gain-pumped
// speech worse than plain speech. Echo cancellation stays on so the agent cannot interrupt itself.
const capture = new AudioCapture({
  workletUrl: config.captureWorkletUrl, targetRate: RATE, chunkMs: 50,
  processing: { noiseSuppression: false, autoGainControl: false },
});
const playback = new AudioPlayback({ workletUrl: config.playbackWorkletUrl, sampleRate: RATE });
const client = new RealtimeClient({ credentials: fetchCredentials, resumeSeconds: config.resumeSeconds });

const state = {
  sessionId: null,
  openedAt: null,
  mode: "vad",
  pttHeld: false,
  pttChunks: 0,
  replyOnCommit: false, // a push-to-talk turn was committed; ask for the reply once it is
  responseActive: false,
  audioItem: null, // the assistant item whose audio is playing
  interrupted: new Set(), // assistant items the user talked over
  turnEndedAt: null, // when the user's turn ended, until the reply's first audio
  latencies: [],
  items: new Map(), // item id -> {li, text, role, samples, segments}
  agentState: "idle", // idle | listening | hearing | thinking | speaking
  log: [],
  logShown: 0, // how many logged events pass the filter (the count follows it)
  logTypes: new Set(),
  timers: [],
};

// Read by the browser test (and handy in the developer tools).
window.switchboardConsole = {
  client, capture, playback, state,
  stats: { chunksSent: 0, playbackSamples: 0, playbackNonSilentSamples: 0 },
};

// --- audio <-> base64 (PCM16 little-endian, the byte order of every platform browsers run on) ----

function pcmToBase64(pcm) {
  const bytes = new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function base64ToPcm(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length & ~1);
  for (let i = 0; i < bytes.length; i++) bytes[i] = binary.charCodeAt(i);
  return new Int16Array(bytes.buffer);
}

// --- connection ---------------------------------------------------------------------------------

async function fetchCredentials() {
  const response = await fetch(config.tokenUrl, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": config.csrfToken },
    body: JSON.stringify({ environment: $("environment").value, deployment: $("deployment").value || null }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error?.message || `The token request failed (${response.status}).`);
    error.code = body.error?.code || "token_failed";
    error.status = response.status;
    throw error;
  }
  // The resumable endpoint, named by our session key, on the host the portal says to use.
  const url = new URL(body.ws_url);
  url.pathname = config.sessionPath;
  url.searchParams.set("key", state.sessionId);
  url.searchParams.set("protocol", "realtime");
  return { url: url.toString(), token: body.token };
}

function fillDeployments() {
  const kind = $("environment").value;
  const select = $("deployment");
  select.replaceChildren();
  const choices = config.deployments.filter((d) => d.environment === kind);
  for (const deployment of choices) {
    const option = new Option(`${deployment.name} (${deployment.agent})${deployment.is_default ? " · default" : ""}`,
      deployment.key, deployment.is_default, deployment.is_default);
    select.add(option);
  }
  if (!choices.length) select.add(new Option("No deployment in this environment", ""));
}

function setStatus(kind, text) {
  $("connection-status").textContent = text;
  $("connection-status").parentElement.dataset.state = kind;
}

const AGENT_STATE_TEXT = {
  idle: "not connected", listening: "listening", hearing: "hearing you", thinking: "thinking", speaking: "speaking",
};

/** What the agent is doing, as the user experiences it (speaking means its audio is playing). */
function setAgentState(kind) {
  if (state.agentState === kind) return;
  state.agentState = kind;
  $("agent-state").textContent = AGENT_STATE_TEXT[kind];
  $("agent-state").closest(".agent-state").dataset.state = kind;
  if (kind !== "speaking") $("out-level-bar").style.width = "0";
}

/** Once the reply's audio stops (or there is none), the agent is listening again. */
function settleAgentState() {
  if (!client.open) setAgentState("idle");
  else if (playback.playing) setAgentState("speaking");
  else if (state.responseActive) setAgentState("thinking");
  else setAgentState("listening");
}

function setConnectedControls(connected) {
  $("connect").disabled = connected;
  $("environment").disabled = connected;
  $("deployment").disabled = connected;
  $("disconnect").disabled = !connected;
  $("drop").disabled = !connected;
  for (const id of ["mic-toggle", "mic-mute", "ptt", "end-turn", "typed-text", "typed-send", "settings-apply"]) {
    $(id).disabled = !connected;
  }
}

async function connect(event) {
  event.preventDefault();
  for (const id of ["connect", "environment", "deployment"]) $(id).disabled = true;
  setStatus("connecting", "Connecting…");
  state.sessionId = `console-${crypto.randomUUID()}`;
  state.openedAt = null;
  state.latencies = [];
  $("console-off").hidden = true;
  try {
    await playback.start(); // inside the click, so the browser lets it make sound
  } catch (error) {
    setStatus("closed", `Audio output unavailable: ${error.message}`);
  }
  await client.connect();
}

function onState({ detail }) {
  if (detail.state === "connecting") return;
  if (detail.state === "open") {
    if (detail.resumed) {
      notice(`Connection restored: resumed the same session after ${detail.downSeconds.toFixed(1)} s.`);
    } else {
      state.openedAt = Date.now();
      startTimers();
      if (state.mode === "ptt") sendTurnDetection();
    }
    setStatus("open", `${detail.resumed ? "Resumed" : "Connected"} · session ${state.sessionId}`);
    setConnectedControls(true);
    settleAgentState();
  } else if (detail.state === "reconnecting") {
    if (detail.attempt === 1) notice("Connection lost: resuming the session…");
    setStatus("reconnecting", `Connection lost · resuming session (attempt ${detail.attempt})…`);
    $("disconnect").disabled = false;
    $("drop").disabled = true;
  } else if (detail.state === "closed") {
    const why = detail.message ? `${detail.reason}: ${detail.message}` : detail.reason || "";
    setStatus("closed", why && why !== "closed by you" ? `Closed · ${why}` : "Disconnected");
    if (why && why !== "closed by you") notice(`Session ended · ${why}`, true);
    if (detail.reason === "console_key_revoked") {
      // Revoking the console's key is respected: say so, and offer the explicit way back.
      $("console-off-text").textContent = detail.message;
      const hidden = document.getElementById("console-off-environment");
      if (hidden) hidden.value = $("environment").value;
      $("console-off").hidden = false;
    }
    setConnectedControls(false);
    endSession();
    setAgentState("idle");
  }
}

function endSession() {
  state.timers.forEach(clearInterval);
  state.timers = [];
  state.responseActive = false;
  state.audioItem = null;
  state.turnEndedAt = null;
  state.replyOnCommit = false;
  playback.stop();
  if (capture.running) toggleMic();
  // The gateway writes the last usage when the session ends: one more look shortly after.
  setTimeout(pollUsage, 1500);
}

// --- server events ------------------------------------------------------------------------------

function onProtocolEvent({ detail }) {
  logEvent(detail);
  if (detail.direction === "in") handleServerEvent(detail.event);
}

function handleServerEvent(event) {
  switch (event.type) {
    case "session.created":
    case "session.updated":
      fillSettings(event.session || {});
      if (event.type === "session.updated") $("settings-status").textContent = "Settings applied.";
      break;
    case "input_audio_buffer.speech_started":
      bargeIn();
      setAgentState("hearing");
      turnFor(event.item_id, "user", "");
      break;
    case "input_audio_buffer.speech_stopped":
      state.turnEndedAt = performance.now();
      setAgentState("thinking");
      break;
    case "input_audio_buffer.committed":
      if (state.replyOnCommit) {
        state.replyOnCommit = false;
        client.send({ type: "response.create" });
      }
      break;
    case "conversation.item.added":
    case "conversation.item.created":
      itemAdded(event.item || {});
      break;
    case "conversation.item.input_audio_transcription.delta":
      appendText(event.item_id, "user", event.delta || "");
      break;
    case "conversation.item.input_audio_transcription.completed":
      setText(event.item_id, "user", event.transcript || "", "(nothing recognised)");
      break;
    case "response.created":
      state.responseActive = true;
      if (state.agentState !== "speaking" && state.agentState !== "hearing") setAgentState("thinking");
      break;
    case "response.output_audio.delta":
    case "response.audio.delta":
      onAudioDelta(event);
      break;
    case "response.output_audio_transcript.delta":
    case "response.audio_transcript.delta":
    case "response.output_text.delta":
    case "response.text.delta":
      appendText(event.item_id, "assistant", event.delta || "");
      break;
    case "response.output_audio_transcript.done":
    case "response.audio_transcript.done":
      setText(event.item_id, "assistant", event.transcript || "");
      break;
    case "response.output_text.done":
    case "response.text.done":
      setText(event.item_id, "assistant", event.text || "");
      break;
    case "response.function_call_arguments.done":
      toolCall(event);
      break;
    case "response.done":
      state.responseActive = false;
      state.turnEndedAt = null;
      for (const entry of state.items.values()) entry.li.classList.remove("pending");
      if (state.agentState !== "hearing") settleAgentState();
      setTimeout(pollUsage, config.meterPollSeconds * 1000);
      break;
    case "error": {
      const error = event.error || {};
      if (error.code === "input_audio_buffer_commit_empty") state.replyOnCommit = false;
      notice(`Error ${error.code || ""}: ${error.message || "unknown error"}`, true);
      break;
    }
    default:
      break;
  }
}

function onAudioDelta(event) {
  if (state.interrupted.has(event.item_id)) return;
  if (state.turnEndedAt !== null) {
    state.latencies.push(performance.now() - state.turnEndedAt);
    state.turnEndedAt = null;
    renderLatency();
  }
  state.audioItem = event.item_id;
  const pcm = base64ToPcm(event.delta || "");
  const entry = turnFor(event.item_id, "assistant", "");
  if (entry) entry.samples += pcm.length;
  playback.enqueue(pcm, event.item_id || "");
}

/** The user started speaking: stop the reply at once and tell the agent how much was heard. */
async function bargeIn() {
  const item = state.audioItem;
  // Still playing, or between two deltas of a reply that is still coming.
  if (!item || !(playback.playing || state.responseActive)) return;
  state.audioItem = null;
  state.interrupted.add(item); // its remaining deltas, already on their way, are not played
  const stats = await playback.stop();
  const heardSamples = stats.playedByTag[item] || 0;
  const heardMs = Math.floor((heardSamples * 1000) / RATE);
  client.send({ type: "conversation.item.truncate", item_id: item, content_index: 0, audio_end_ms: heardMs });
  const entry = state.items.get(item);
  if (entry) showCut(entry, heardSamples, heardMs);
}

/** The part of a reply's transcript that was heard. Each transcript delta starts where the audio
 * received so far ends (a reply's text arrives just ahead of its audio), so the text of the segment
 * playing when the user cut in is kept in proportion, ending at a word boundary. */
function heardText(entry, heardSamples) {
  let text = "";
  for (const [index, segment] of entry.segments.entries()) {
    if (heardSamples <= segment.start) break; // nothing of this segment was heard
    const end = index + 1 < entry.segments.length ? entry.segments[index + 1].start : entry.samples;
    if (heardSamples >= end) {
      text += segment.text;
      continue;
    }
    const kept = Math.floor((segment.text.length * (heardSamples - segment.start)) / (end - segment.start));
    const part = segment.text.slice(0, kept);
    const space = part.lastIndexOf(" ");
    text += space > 0 ? part.slice(0, space) : part;
    break;
  }
  return text.trimEnd();
}

function showCut(entry, heardSamples, heardMs) {
  entry.text.textContent = heardText(entry, heardSamples);
  entry.li.dataset.interrupted = "true";
  entry.li.dataset.heardMs = String(heardMs);
  entry.li.classList.remove("pending");
  const note = document.createElement("span");
  note.className = "cut-note";
  note.textContent = `Interrupted after ${(heardMs / 1000).toFixed(1)} s: the rest was never heard.`;
  entry.li.append(note);
}

// --- transcript ---------------------------------------------------------------------------------

function turnFor(itemId, role, initialText) {
  if (!itemId) return null;
  let entry = state.items.get(itemId);
  if (!entry) {
    const li = document.createElement("li");
    li.className = `turn ${role} pending`;
    li.dataset.itemId = itemId;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : role === "assistant" ? "Agent" : role;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = initialText;
    li.append(who, text);
    $("transcript").append(li);
    entry = { li, text, role, samples: 0, segments: [] };
    state.items.set(itemId, entry);
    scrollToEnd($("transcript"));
  }
  return entry;
}

function itemAdded(item) {
  if (item.type === "message") {
    const parts = item.content || [];
    const text = parts.map((p) => p.text || p.transcript || "").join(" ").trim();
    const entry = turnFor(item.id, item.role, text);
    if (entry && text) {
      entry.text.textContent = text;
      if (item.role === "user") entry.li.classList.remove("pending");
    }
  }
}

function appendText(itemId, role, delta) {
  if (state.interrupted.has(itemId)) return; // text of a reply cut short was never heard
  const entry = turnFor(itemId, role, "");
  if (!entry) return;
  if (role === "assistant") entry.segments.push({ start: entry.samples, text: delta });
  entry.text.textContent += delta;
  scrollToEnd($("transcript"));
}

function setText(itemId, role, text, fallback = "") {
  if (state.interrupted.has(itemId)) return;
  const entry = turnFor(itemId, role, "");
  if (!entry) return;
  entry.text.textContent = text || fallback;
  entry.li.classList.remove("pending");
}

function toolCall(event) {
  const entry = turnFor(event.item_id, "tool", "");
  entry.li.classList.remove("pending");
  entry.li.querySelector(".who").textContent = "Tool call";
  entry.text.textContent = `${event.name}(${event.arguments})`;
}

function notice(text, isError = false) {
  const li = document.createElement("li");
  li.className = `turn notice${isError ? " error" : ""}`;
  li.textContent = text;
  $("transcript").append(li);
  scrollToEnd($("transcript"));
}

function scrollToEnd(element) {
  element.scrollTop = element.scrollHeight;
}

// --- microphone ---------------------------------------------------------------------------------

async function toggleMic() {
  const button = $("mic-toggle");
  if (capture.running) {
    await capture.stop();
    button.textContent = "Start microphone";
    button.setAttribute("aria-pressed", "false");
    $("level-bar").style.width = "0";
    $("mic-echo").disabled = false;
    return;
  }
  button.disabled = true;
  $("mic-echo").disabled = true;
  capture.processing = { ...capture.processing, echoCancellation: $("mic-echo").checked };
  try {
    await capture.start();
    button.textContent = "Stop microphone";
    button.setAttribute("aria-pressed", "true");
  } catch (error) {
    $("mic-echo").disabled = false;
    notice(`The microphone could not start: ${error.message}`, true);
  } finally {
    button.disabled = !client.open;
  }
}

function onChunk({ detail }) {
  if (!client.open) return;
  if (state.mode === "ptt" && !state.pttHeld) return;
  if (client.send({ type: "input_audio_buffer.append", audio: pcmToBase64(detail.pcm) })) {
    window.switchboardConsole.stats.chunksSent += 1;
    if (state.pttHeld) state.pttChunks += 1;
  }
}

function onLevel({ detail }) {
  // -60 dBFS .. 0 dBFS onto 0 .. 100 %.
  const db = detail.rms > 0 ? 20 * Math.log10(detail.rms) : -100;
  $("level-bar").style.width = `${Math.max(0, Math.min(100, ((db + 60) / 60) * 100)).toFixed(0)}%`;
}

function toggleMute() {
  capture.setMuted(!capture.muted);
  $("mic-mute").setAttribute("aria-pressed", String(capture.muted));
  $("mic-mute").textContent = capture.muted ? "Unmute" : "Mute";
}

function setMode(mode) {
  state.mode = mode;
  $("ptt").hidden = mode !== "ptt";
  const select = $("setting-turn-detection");
  if (mode === "ptt") select.value = "none";
  else if (select.value === "none") select.value = "server_vad";
  if (client.open) sendTurnDetection();
}

function turnDetection() {
  const kind = $("setting-turn-detection").value;
  if (kind === "none") return null;
  if (kind === "semantic_vad") return { type: "semantic_vad" };
  return { type: "server_vad", silence_duration_ms: Number($("setting-silence").value) || 500 };
}

function sendTurnDetection() {
  client.send({ type: "session.update", session: { type: "realtime", audio: { input: { turn_detection: turnDetection() } } } });
}

async function pttDown() {
  if (state.mode !== "ptt" || state.pttHeld || !client.open) return;
  state.pttHeld = true;
  state.pttChunks = 0;
  $("ptt").setAttribute("aria-pressed", "true");
  bargeIn();
  if (state.responseActive) client.send({ type: "response.cancel" });
  client.send({ type: "input_audio_buffer.clear" });
}

async function pttUp() {
  if (!state.pttHeld) return;
  await capture.flush(); // the last partial chunk belongs to this turn
  state.pttHeld = false;
  $("ptt").setAttribute("aria-pressed", "false");
  if (!state.pttChunks) {
    notice("Nothing was recorded: is the microphone on and unmuted?", true);
    return;
  }
  // response.create waits for the commit to be acknowledged, so the reply always sees the new item.
  if (client.send({ type: "input_audio_buffer.commit" })) state.replyOnCommit = true;
  state.turnEndedAt = performance.now();
  setAgentState("thinking");
}

/** End the user's turn now: commit what was said and ask for the reply, without waiting for the
 * server's silence detection (or, in push to talk, without holding the button). */
async function endTurn() {
  if (!client.open) return;
  if (state.pttHeld) {
    await pttUp();
    return;
  }
  if (capture.running) await capture.flush();
  if (client.send({ type: "input_audio_buffer.commit" })) state.replyOnCommit = true;
  state.turnEndedAt = performance.now();
  setAgentState("thinking");
}

function isTyping(target) {
  return target instanceof HTMLElement && target.closest("input, textarea, select, button, [contenteditable]");
}

// --- typed turns ----------------------------------------------------------------------------------

function sendTyped(event) {
  event.preventDefault();
  const input = $("typed-text");
  const text = input.value.trim();
  if (!text || !client.open) return;
  if (state.responseActive) {
    bargeIn();
    client.send({ type: "response.cancel" });
  }
  client.send({ type: "conversation.item.create", item: { type: "message", role: "user", content: [{ type: "input_text", text }] } });
  client.send({ type: "response.create" });
  input.value = "";
  setAgentState("thinking");
}

// --- settings -------------------------------------------------------------------------------------

const TOOL_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** The tools list from the field's JSON, or a message saying what is wrong with it. */
function toolsParse(text) {
  let value;
  try {
    value = JSON.parse(text.trim() || "[]");
  } catch (error) {
    return { error: `Not valid JSON: ${error.message}` };
  }
  if (!Array.isArray(value)) return { error: "Tools must be a JSON list, e.g. [] or [{\"type\": \"function\", ...}]." };
  for (const [index, tool] of value.entries()) {
    const where = `Tool ${index + 1}`;
    if (tool === null || typeof tool !== "object" || Array.isArray(tool)) return { error: `${where} must be an object.` };
    if ((tool.type ?? "function") !== "function") return { error: `${where}: only "function" tools are supported.` };
    if (typeof tool.name !== "string" || !TOOL_NAME.test(tool.name)) {
      return { error: `${where}: "name" must be 1 to 64 letters, digits, _ or -.` };
    }
    if (tool.description !== undefined && typeof tool.description !== "string") {
      return { error: `${where}: "description" must be a string.` };
    }
    const params = tool.parameters;
    if (params !== undefined && (params === null || typeof params !== "object" || Array.isArray(params))) {
      return { error: `${where}: "parameters" must be a JSON Schema object.` };
    }
    if (params && params.type !== undefined && params.type !== "object") {
      return { error: `${where}: "parameters.type" must be "object".` };
    }
  }
  return { tools: value.map((tool) => ({ type: "function", ...tool })) };
}

function showToolsError(message) {
  const field = $("setting-tools");
  $("setting-tools-error").textContent = message || "";
  if (message) field.setAttribute("aria-invalid", "true");
  else field.removeAttribute("aria-invalid");
}

function fillSettings(session) {
  if (typeof session.instructions === "string") $("setting-instructions").value = session.instructions;
  const voice = session.audio?.output?.voice ?? session.voice;
  if (voice) {
    const select = $("setting-voice");
    if (![...select.options].some((o) => o.value === voice)) select.add(new Option(voice, voice));
    select.value = voice;
  }
  const detection = session.audio?.input ? session.audio.input.turn_detection : session.turn_detection;
  if (detection !== undefined) {
    $("setting-turn-detection").value = detection ? detection.type : "none";
    if (detection?.silence_duration_ms !== undefined) $("setting-silence").value = detection.silence_duration_ms;
  }
  const modalities = session.output_modalities || session.modalities;
  if (Array.isArray(modalities)) $("setting-modalities").value = modalities.includes("audio") ? "audio" : "text";
  if (Array.isArray(session.tools)) {
    $("setting-tools").value = JSON.stringify(session.tools, null, 2);
    showToolsError("");
  }
}

function applySettings(event) {
  event.preventDefault();
  const parsed = toolsParse($("setting-tools").value);
  if (parsed.error) {
    showToolsError(parsed.error);
    $("setting-tools").focus();
    $("settings-status").textContent = "Not sent: fix the tools first.";
    return;
  }
  showToolsError("");
  const detection = turnDetection();
  const mode = detection === null ? "ptt" : "vad";
  if (mode !== state.mode) {
    document.querySelector(`input[name="mic-mode"][value="${mode}"]`).checked = true;
    state.mode = mode;
    $("ptt").hidden = mode !== "ptt";
  }
  const sent = client.send({
    type: "session.update",
    session: {
      type: "realtime",
      instructions: $("setting-instructions").value,
      output_modalities: [$("setting-modalities").value],
      audio: { input: { turn_detection: detection }, output: { voice: $("setting-voice").value } },
      tools: parsed.tools,
    },
  });
  $("settings-status").textContent = sent ? "Sent; waiting for session.updated…" : "Not connected.";
}

// --- event log ------------------------------------------------------------------------------------

function elide(event) {
  if (!AUDIO_EVENTS.has(event.type)) return event;
  const key = event.type === "input_audio_buffer.append" ? "audio" : "delta";
  const payload = typeof event[key] === "string" ? event[key] : "";
  const bytes = Math.floor((payload.length * 3) / 4) - (payload.endsWith("==") ? 2 : payload.endsWith("=") ? 1 : 0);
  return { ...event, [key]: `<${bytes} bytes of audio elided>` };
}

function logEvent({ direction, event, at }) {
  const entry = { time: at.toISOString(), direction, type: String(event?.type ?? ""), event: elide(event) };
  state.log.push(entry);
  if (!state.logTypes.has(entry.type)) {
    state.logTypes.add(entry.type);
    $("log-types").append(new Option(entry.type));
  }
  const dropped = state.log.length > LOG_MAX ? state.log.shift() : null;
  if (dropped && matchesFilter(dropped)) state.logShown -= 1;
  if (matchesFilter(entry)) {
    state.logShown += 1;
    const list = $("event-log");
    const nearEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(logRow(entry));
    while (list.childElementCount > LOG_DOM_MAX) list.firstElementChild.remove();
    if (nearEnd) scrollToEnd(list);
  }
  renderLogCount();
}

function filtering() {
  return $("log-hide-appends").checked || $("log-filter").value.trim() !== "";
}

/** The count follows the filter: "12 of 480 events" while filtering, else "480 events". */
function renderLogCount() {
  const total = state.log.length;
  const plural = (n) => `${n} event${n === 1 ? "" : "s"}`;
  $("log-count").textContent = filtering() ? `${state.logShown} of ${plural(total)} shown` : plural(total);
  $("log-count").dataset.shown = String(state.logShown);
  $("log-count").dataset.total = String(total);
}

function matchesFilter(entry) {
  if ($("log-hide-appends").checked && entry.type === "input_audio_buffer.append") return false;
  const filter = $("log-filter").value.trim().toLowerCase();
  return !filter || entry.type.toLowerCase().includes(filter);
}

function logRow(entry) {
  const li = document.createElement("li");
  li.dataset.type = entry.type;
  li.dataset.direction = entry.direction;
  if (entry.type === "error") li.classList.add("error");
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = entry.time.slice(11, 23);
  const dir = document.createElement("span");
  dir.className = `dir ${entry.direction}`;
  dir.textContent = entry.direction === "out" ? "↑" : "↓";
  dir.title = entry.direction === "out" ? "sent" : "received";
  const type = document.createElement("span");
  type.className = "type";
  type.textContent = entry.type;
  summary.append(time, dir, type);
  details.append(summary);
  // The JSON is rendered when first opened: most rows are never expanded.
  details.addEventListener("toggle", () => {
    if (details.open && !details.querySelector("pre")) {
      const pre = document.createElement("pre");
      pre.textContent = JSON.stringify(entry.event, null, 2);
      details.append(pre);
    }
  });
  li.append(details);
  return li;
}

function rerenderLog() {
  const matching = state.log.filter(matchesFilter);
  state.logShown = matching.length;
  $("event-log").replaceChildren(...matching.slice(-LOG_DOM_MAX).map(logRow));
  scrollToEnd($("event-log"));
  renderLogCount();
}

function downloadLog() {
  const lines = state.log.map((entry) => JSON.stringify(entry)).join("\n");
  const blob = new Blob([lines ? `${lines}\n` : ""], { type: "application/x-ndjson" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `switchboard-${state.sessionId || "console"}.jsonl`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

// --- meters ---------------------------------------------------------------------------------------

function setMeter(id, value, text) {
  $(id).dataset.value = String(value);
  $(id).textContent = text;
}

function renderLatency() {
  const list = [...state.latencies].sort((a, b) => a - b);
  const last = state.latencies[state.latencies.length - 1];
  const median = list.length % 2 ? list[(list.length - 1) / 2] : (list[list.length / 2 - 1] + list[list.length / 2]) / 2;
  setMeter("meter-latency", Math.round(last), `${Math.round(last)} ms`);
  setMeter("meter-latency-median", Math.round(median), `${Math.round(median)} ms (${list.length} turn${list.length === 1 ? "" : "s"})`);
}

function renderDuration(meteredSeconds) {
  const live = state.openedAt ? Math.floor((Date.now() - state.openedAt) / 1000) : 0;
  const el = $("meter-duration");
  if (meteredSeconds !== undefined) el.dataset.metered = meteredSeconds;
  const metered = el.dataset.metered ? ` · ${Number(el.dataset.metered).toFixed(1)} s metered` : "";
  setMeter("meter-duration", live, `${live} s${metered}`);
}

async function pollUsage() {
  if (!state.sessionId) return;
  const url = config.usageUrl.replace(config.usagePlaceholder, encodeURIComponent(state.sessionId));
  let usage;
  try {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) return; // not metered yet
    usage = await response.json();
  } catch {
    return; // the next poll tries again
  }
  const m = (name) => Number(usage.metrics[name] || 0);
  renderDuration(m("session_seconds"));
  setMeter("meter-audio-in", m("audio_in_seconds"), `${m("audio_in_seconds").toFixed(3)} s`);
  setMeter("meter-audio-out", m("audio_out_seconds"), `${m("audio_out_seconds").toFixed(3)} s`);
  const tokens = m("text_in_tokens") + m("text_out_tokens");
  setMeter("meter-tokens", tokens, `${m("text_in_tokens")} / ${m("text_out_tokens")}`);
  setMeter("meter-cost", usage.cost_micros, usage.cost);
}

function startTimers() {
  state.timers.push(setInterval(() => renderDuration(), 1000));
  state.timers.push(setInterval(pollUsage, config.meterPollSeconds * 1000));
}

// --- wiring ---------------------------------------------------------------------------------------

client.addEventListener("state", onState);
client.addEventListener("event", onProtocolEvent);
capture.addEventListener("chunk", onChunk);
capture.addEventListener("level", onLevel);
const onPlayback = ({ type, detail }) => {
  window.switchboardConsole.stats.playbackSamples = detail.played;
  window.switchboardConsole.stats.playbackNonSilentSamples = detail.nonSilent;
  if (type === "drained") {
    settleAgentState();
    return;
  }
  if (playback.playing && state.agentState !== "hearing") setAgentState("speaking");
  if (state.agentState === "speaking") {
    // Output level, -60 dBFS .. 0 dBFS onto 0 .. 100 %, as for the microphone.
    const db = detail.rms > 0 ? 20 * Math.log10(detail.rms) : -100;
    $("out-level-bar").style.width = `${Math.max(0, Math.min(100, ((db + 60) / 60) * 100)).toFixed(0)}%`;
  }
};
playback.addEventListener("progress", onPlayback);
playback.addEventListener("drained", onPlayback);

$("environment").addEventListener("change", fillDeployments);
$("connect-form").addEventListener("submit", connect);
$("disconnect").addEventListener("click", () => client.close());
$("drop").addEventListener("click", () => client.drop());
$("mic-toggle").addEventListener("click", toggleMic);
$("mic-mute").addEventListener("click", toggleMute);
for (const radio of document.querySelectorAll('input[name="mic-mode"]')) {
  radio.addEventListener("change", () => setMode(radio.value));
}
const ptt = $("ptt");
ptt.addEventListener("pointerdown", (event) => { ptt.setPointerCapture(event.pointerId); pttDown(); });
ptt.addEventListener("pointerup", pttUp);
ptt.addEventListener("pointercancel", pttUp);
ptt.addEventListener("keydown", (event) => { if ((event.key === " " || event.key === "Enter") && !event.repeat) { event.preventDefault(); pttDown(); } });
ptt.addEventListener("keyup", (event) => { if (event.key === " " || event.key === "Enter") { event.preventDefault(); pttUp(); } });
document.addEventListener("keydown", (event) => {
  if (event.key === " " && !event.repeat && state.mode === "ptt" && !isTyping(event.target)) { event.preventDefault(); pttDown(); }
});
document.addEventListener("keyup", (event) => {
  if (event.key === " " && state.mode === "ptt" && !isTyping(event.target)) { event.preventDefault(); pttUp(); }
});
$("typed-turn").addEventListener("submit", sendTyped);
$("settings-form").addEventListener("submit", applySettings);
$("setting-tools").addEventListener("input", () => showToolsError(toolsParse($("setting-tools").value).error));
$("log-filter").addEventListener("input", rerenderLog);
$("log-hide-appends").addEventListener("change", rerenderLog);
$("end-turn").addEventListener("click", endTurn);
$("log-download").addEventListener("click", downloadLog);
$("log-clear").addEventListener("click", () => {
  state.log = [];
  state.logShown = 0;
  $("event-log").replaceChildren();
  renderLogCount();
});
// Leaving the page ends the session (a normal close), rather than holding it for resume.
window.addEventListener("pagehide", () => { if (client.state !== "closed") client.close(); });

fillDeployments();
$("connect").disabled = false; // disabled in the HTML, so a click before this module runs cannot submit the form
document.documentElement.dataset.consoleReady = "true";
