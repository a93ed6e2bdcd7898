// Wire protocol v1, JavaScript side (spec: docs/protocol.md; Python twin: voice/protocol/).
// An ES module with no dependencies: runs in browsers and Node >= 18. Pure functions only;
// the caller owns the WebSocket (set binaryType = "arraybuffer") and feeds frames in.

export const PROTOCOL_VERSION = 1;
export const HEADER_SIZE = 18;
export const DEFAULT_MAX_PAYLOAD_BYTES = 65536;
export const MAX_PING_PAYLOAD_BYTES = 125;

/** Frame type byte. Receivers must tolerate other values (decodeFrame sets known=false). */
export const MessageType = Object.freeze({
  HELLO: 0x01,
  READY: 0x02,
  AUDIO: 0x10,
  EVENT: 0x20,
  CONTROL: 0x21,
  ERROR: 0x30,
  PING: 0x31,
  PONG: 0x32,
  BYE: 0x3f,
});

/** Flag bits; the others are reserved: send 0, ignore on receipt. */
export const Flags = Object.freeze({
  NONE: 0,
  SEGMENT_START: 0x01,
  SEGMENT_END: 0x02,
});

/** u16 in ERROR/BYE payloads, and the WebSocket close code when fatal. */
export const ErrorCode = Object.freeze({
  BAD_FRAME: 4000,
  LENGTH_MISMATCH: 4001,
  TOO_LARGE: 4002,
  BAD_JSON: 4003,
  BAD_MESSAGE: 4004,
  UNSUPPORTED_VERSION: 4005,
  HANDSHAKE_REQUIRED: 4006,
  AUTH_FAILED: 4007,
  UNSUPPORTED_CODEC: 4008,
  BAD_AUDIO: 4009,
  SERVER_BUSY: 4010,
  IDLE_TIMEOUT: 4011,
  SHUTTING_DOWN: 4012,
  INTERNAL: 4013,
  TOO_MANY_ERRORS: 4014,
  RATE_LIMITED: 4015,
});

/** BYE reason for an ordinary goodbye. */
export const BYE_NORMAL = 0;

const TYPE_NAMES = new Map(Object.entries(MessageType).map(([name, value]) => [value, name]));
const ERROR_NAMES = new Map(Object.entries(ErrorCode).map(([name, value]) => [value, name]));

/** Codes after which the server closes even a running session. */
export const FATAL_ERROR_CODES = Object.freeze(
  new Set([
    ErrorCode.UNSUPPORTED_VERSION,
    ErrorCode.HANDSHAKE_REQUIRED,
    ErrorCode.AUTH_FAILED,
    ErrorCode.UNSUPPORTED_CODEC,
    ErrorCode.SERVER_BUSY,
    ErrorCode.IDLE_TIMEOUT,
    ErrorCode.SHUTTING_DOWN,
    ErrorCode.TOO_MANY_ERRORS,
  ]),
);

/** Event types of v1; others must still be accepted (parseEvent marks them known=false). */
export const EVENT_TYPES = Object.freeze([
  "speech_started", "speech_stopped", "transcript_partial", "transcript_final", "input_ended",
  "session_options", "agent_text", "tool_call", "tool_result", "state_changed", "turn_metrics",
  "interrupted", "end_of_turn", "backchannel", "call_ending",
]);

/**
 * True when ERROR `code` ends the session. Before READY every error does; an unknown code is
 * treated as fatal (the server's close is what really ends it).
 */
export function isFatal(code, { duringHandshake = false } = {}) {
  return duringHandshake || !ERROR_NAMES.has(code) || FATAL_ERROR_CODES.has(code);
}

/** The peer broke the protocol; `code` is an ErrorCode number. */
export class ProtocolError extends Error {
  constructor(code, message) {
    super(`${ERROR_NAMES.get(code) ?? code}: ${message}`);
    this.name = "ProtocolError";
    this.code = code;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const lenientDecoder = new TextDecoder("utf-8");

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new TypeError("expected an ArrayBuffer or a typed array");
}

function checkRange(name, value, max) {
  const ok =
    typeof value === "bigint"
      ? value >= 0n && value <= max
      : Number.isSafeInteger(value) && value >= 0 && value <= Number(max);
  if (!ok) throw new RangeError(`${name} ${value} out of range 0..${max}`);
}

/**
 * Frame -> bytes. `timestamp` may be a Number or a BigInt (u64). Throws RangeError on fields
 * that do not fit: that is a bug in the caller, not a protocol error.
 */
export function encodeFrame({ type, flags = 0, seq = 0, timestamp = 0, payload = new Uint8Array(0) }) {
  const body = asBytes(payload);
  checkRange("type", type, 0xffn);
  checkRange("flags", flags, 0xffn);
  checkRange("seq", seq, 0xffffffffn);
  checkRange("timestamp", timestamp, 0xffffffffffffffffn);
  const out = new Uint8Array(HEADER_SIZE + body.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, type);
  view.setUint8(1, flags);
  view.setUint32(2, seq);
  view.setBigUint64(6, BigInt(timestamp));
  view.setUint32(14, body.length);
  out.set(body, HEADER_SIZE);
  return out;
}

/**
 * Bytes of one WebSocket message -> {type, flags, seq, timestamp, payload, known}.
 * Checks, in this order: < 18 bytes -> BAD_FRAME; length > maxPayloadBytes -> TOO_LARGE (from
 * the header alone); length != bytes present -> LENGTH_MISMATCH. `payload` is a view into
 * `data` (no copy). `timestamp` is a Number, or a BigInt above 2^53 - 1.
 */
export function decodeFrame(data, { maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES } = {}) {
  const bytes = asBytes(data);
  if (bytes.length < HEADER_SIZE) {
    throw new ProtocolError(ErrorCode.BAD_FRAME, `truncated header: ${bytes.length} of ${HEADER_SIZE} bytes`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE);
  const length = view.getUint32(14);
  if (length > maxPayloadBytes) {
    throw new ProtocolError(ErrorCode.TOO_LARGE, `payload of ${length} bytes exceeds ${maxPayloadBytes}`);
  }
  const present = bytes.length - HEADER_SIZE;
  if (present !== length) {
    throw new ProtocolError(ErrorCode.LENGTH_MISMATCH, `header says ${length} payload bytes, got ${present}`);
  }
  const type = view.getUint8(0);
  const big = view.getBigUint64(6);
  return {
    type,
    flags: view.getUint8(1),
    seq: view.getUint32(2),
    timestamp: big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big,
    payload: bytes.subarray(HEADER_SIZE),
    known: TYPE_NAMES.has(type),
  };
}

/** Name of a message type, or undefined when unknown. */
export function typeName(type) {
  return TYPE_NAMES.get(type);
}

/** Sequence number after `seq`: +1, wrapping at 2^32. */
export function nextSeq(seq) {
  return (seq + 1) >>> 0;
}

// ------------------------------------------------------------------ JSON payloads

/** Compact UTF-8 JSON, the encoding every JSON payload uses. */
export function encodeJson(value) {
  return encoder.encode(JSON.stringify(value));
}

/** JSON payload -> object; BAD_JSON for bytes that are not UTF-8 JSON, BAD_MESSAGE for non-objects. */
export function decodeJson(payload, what = "payload") {
  let value;
  try {
    value = JSON.parse(decoder.decode(asBytes(payload)));
  } catch (error) {
    throw new ProtocolError(ErrorCode.BAD_JSON, `${what}: ${error.message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new ProtocolError(ErrorCode.BAD_MESSAGE, `${what}: expected a JSON object`);
  }
  return value;
}

/**
 * A complete HELLO object: the defaults of the spec overridden by `fields`. Keys come out in
 * the order of the spec, so the bytes match the Python encoder's for the same values.
 */
export function makeHello({
  version = PROTOCOL_VERSION,
  token = null,
  input = {},
  output = {},
  options = {},
  client = null,
  ...extra
} = {}) {
  return {
    version,
    token,
    input: { codec: "opus", sample_rate: 48000, channels: 1, ...input },
    output: { codec: "opus", sample_rate: 48000, ...output },
    options,
    client,
    ...extra,
  };
}

/** HELLO frame from `fields` (see makeHello); header fields default to seq 0, timestamp 0. */
export function helloFrame(fields = {}, { seq = 0, timestamp = 0 } = {}) {
  return encodeFrame({ type: MessageType.HELLO, seq, timestamp, payload: encodeJson(makeHello(fields)) });
}

/** CONTROL frame, e.g. controlFrame({type: "playback_mark", played_samples: 960, segment: 0}, {seq}). */
export function controlFrame(control, { seq = 0, timestamp = 0 } = {}) {
  if (typeof control?.type !== "string") throw new TypeError("a control needs a string 'type'");
  return encodeFrame({ type: MessageType.CONTROL, seq, timestamp, payload: encodeJson(control) });
}

/** AUDIO frame: one Opus packet or PCM16 LE bytes; flags from Flags. */
export function audioFrame(payload, { seq = 0, timestamp = 0, flags = 0 } = {}) {
  return encodeFrame({ type: MessageType.AUDIO, flags, seq, timestamp, payload });
}

/** READY payload -> object, with the few checks a client relies on. */
export function parseReady(payload) {
  const ready = decodeJson(payload, "READY");
  if (!Number.isInteger(ready.version) || typeof ready.session_id !== "string") {
    throw new ProtocolError(ErrorCode.BAD_MESSAGE, "READY: needs an integer version and a string session_id");
  }
  return ready;
}

/**
 * EVENT payload -> the event object plus `known` (false for types newer than this client,
 * which must be accepted, not refused).
 */
export function parseEvent(payload) {
  const event = decodeJson(payload, "EVENT");
  if (typeof event.type !== "string") throw new ProtocolError(ErrorCode.BAD_MESSAGE, "EVENT: missing 'type'");
  return { ...event, known: EVENT_TYPES.includes(event.type) };
}

// ------------------------------------------------------------------ ERROR / BYE payloads

/** u16 code + UTF-8 text: the layout of both ERROR and BYE payloads. */
export function encodeCodeText(code, text = "") {
  checkRange("code", code, 0xffffn);
  const body = encoder.encode(text);
  const out = new Uint8Array(2 + body.length);
  new DataView(out.buffer).setUint16(0, code);
  out.set(body, 2);
  return out;
}

function decodeCodeText(payload, what) {
  const bytes = asBytes(payload);
  if (bytes.length < 2) {
    throw new ProtocolError(ErrorCode.BAD_MESSAGE, `${what} payload shorter than 2 bytes`);
  }
  const code = new DataView(bytes.buffer, bytes.byteOffset, 2).getUint16(0);
  // Diagnostic text: a broken byte becomes U+FFFD rather than hiding the code.
  return { code, text: lenientDecoder.decode(bytes.subarray(2)) };
}

/** ERROR payload -> {code, name, message, fatal}; name is undefined for unknown codes. */
export function parseError(payload) {
  const { code, text } = decodeCodeText(payload, "ERROR");
  return { code, name: ERROR_NAMES.get(code), message: text, fatal: isFatal(code) };
}

/** BYE payload -> {code, reason}; code 0 is a normal goodbye. */
export function parseBye(payload) {
  const { code, text } = decodeCodeText(payload, "BYE");
  return { code, reason: text };
}

/** BYE frame. After sending it, close the WebSocket (1000 for BYE_NORMAL, else `code`). */
export function byeFrame(code = BYE_NORMAL, reason = "", { seq = 0, timestamp = 0 } = {}) {
  return encodeFrame({ type: MessageType.BYE, seq, timestamp, payload: encodeCodeText(code, reason) });
}

/** PING frame with an opaque payload of at most 125 bytes. */
export function pingFrame(payload = new Uint8Array(0), { seq = 0, timestamp = 0 } = {}) {
  if (asBytes(payload).length > MAX_PING_PAYLOAD_BYTES) throw new RangeError("PING payload over 125 bytes");
  return encodeFrame({ type: MessageType.PING, seq, timestamp, payload });
}

/** PONG answering a decoded PING frame, echoing its payload; a PING over 125 bytes is BAD_MESSAGE. */
export function pongFrame(ping, { seq = 0, timestamp = 0 } = {}) {
  if (ping.payload.length > MAX_PING_PAYLOAD_BYTES) {
    const size = ping.payload.length;
    throw new ProtocolError(ErrorCode.BAD_MESSAGE, `PING payload of ${size} bytes exceeds 125`);
  }
  return encodeFrame({ type: MessageType.PONG, seq, timestamp, payload: ping.payload });
}
