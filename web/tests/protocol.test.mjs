// Protocol v1 in JavaScript against the shared golden vectors (tests/golden/) and the spec.
// Run: node --test web/tests/
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
  BYE_NORMAL,
  ErrorCode,
  Flags,
  HEADER_SIZE,
  MessageType,
  ProtocolError,
  audioFrame,
  byeFrame,
  controlFrame,
  decodeFrame,
  decodeJson,
  encodeFrame,
  encodeJson,
  helloFrame,
  isFatal,
  makeHello,
  nextSeq,
  parseBye,
  parseError,
  parseEvent,
  parseReady,
  pingFrame,
  pongFrame,
} from "../protocol.js";

const GOLDEN = new URL("../../tests/golden/", import.meta.url);
const INDEX = JSON.parse(readFileSync(new URL("index.json", GOLDEN), "utf-8"));
const VALID = INDEX.vectors.filter((v) => !("error" in v));
const INVALID = INDEX.vectors.filter((v) => "error" in v);
const KNOWN_TYPES = new Set(Object.values(MessageType));

const bin = (vector) => new Uint8Array(readFileSync(new URL(vector.file, GOLDEN)));
const hex = (bytes) => Buffer.from(bytes).toString("hex");
const fromHex = (text) => new Uint8Array(Buffer.from(text.replace(/\s/g, ""), "hex"));
const hexInt = (value, bytes) => BigInt(value).toString(16).padStart(bytes * 2, "0");

function codeOf(fn) {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
    return error.code;
  }
  assert.fail("no error thrown");
}

// ------------------------------------------------------------------ golden vectors

test("golden set has at least 14 valid and 5 invalid vectors", () => {
  assert.ok(VALID.length >= 14 && INVALID.length >= 5);
});

for (const v of VALID) {
  test(`golden ${v.name}: file matches the documented layout`, () => {
    // Spelled out from the spec table, not with encodeFrame.
    const payloadBytes = v.payload_hex.length / 2;
    const expected =
      hexInt(v.type, 1) + hexInt(v.flags, 1) + hexInt(v.seq, 4) + hexInt(v.timestamp, 8) +
      hexInt(payloadBytes, 4) + v.payload_hex;
    assert.equal(hex(bin(v)), expected);
  });

  test(`golden ${v.name}: decodes to the indexed fields`, () => {
    const frame = decodeFrame(bin(v));
    assert.deepEqual(
      [frame.type, frame.flags, frame.seq, frame.timestamp, hex(frame.payload), frame.known],
      [v.type, v.flags, v.seq, v.timestamp, v.payload_hex, KNOWN_TYPES.has(v.type)],
    );
  });

  test(`golden ${v.name}: fields encode to the file`, () => {
    const frame = { type: v.type, flags: v.flags, seq: v.seq, timestamp: v.timestamp, payload: fromHex(v.payload_hex) };
    assert.equal(hex(encodeFrame(frame)), hex(bin(v)));
  });
}

for (const v of INVALID) {
  test(`golden ${v.name}: refused with ${v.error}`, () => {
    assert.equal(codeOf(() => decodeFrame(bin(v))), ErrorCode[v.error]);
  });
}

test("golden client JSON (HELLO, CONTROL) encodes to the same bytes as Python's", () => {
  const clientVectors = VALID.filter((v) => v.type === MessageType.HELLO || v.type === MessageType.CONTROL);
  assert.ok(clientVectors.length >= 3);
  for (const v of clientVectors) assert.equal(hex(encodeJson(v.json)), v.payload_hex, v.name);
});

test("golden HELLO vectors equal makeHello of their non-default fields", () => {
  const opus = VALID.find((v) => v.name === "hello_opus_48k");
  const fields = { token: "s3cret", options: { agent: "demo", language: "en" }, client: "voice-web/0.1" };
  assert.equal(hex(helloFrame(fields)), hex(bin(opus)));
  const pcm = VALID.find((v) => v.name === "hello_pcm16_16k");
  const pcmHello = makeHello({
    input: { codec: "pcm16", sample_rate: 16000 },
    output: { codec: "pcm16", sample_rate: 16000 },
    client: "voice-cli/0.1",
  });
  assert.equal(hex(encodeJson(pcmHello)), pcm.payload_hex);
});

test("golden server payloads parse: READY, EVENT, ERROR, BYE", () => {
  const payload = (name) => decodeFrame(bin(VALID.find((v) => v.name === name))).payload;
  const ready = parseReady(payload("ready"));
  assert.equal(ready.session_id, "sess-0001");
  assert.equal(ready.limits.max_payload_bytes, 65536);
  const cafe = parseEvent(payload("event_transcript_final_cafe"));
  assert.equal(cafe.known, true);
  assert.equal(cafe.text, "Un café, s'il vous plaît.");
  assert.deepEqual(parseError(payload("error_auth_failed")), {
    code: 4007,
    name: "AUTH_FAILED",
    message: "bad token",
    fatal: true,
  });
  assert.deepEqual(parseBye(payload("bye_normal")), { code: BYE_NORMAL, reason: "client closed" });
  assert.deepEqual(parseBye(payload("bye_with_error_reason")), { code: 4004, reason: "unreadable READY" });
});

// ------------------------------------------------------------------ frames

test("header is 18 bytes, big-endian, in the order of the spec", () => {
  const frame = encodeFrame({
    type: MessageType.AUDIO,
    flags: Flags.SEGMENT_START,
    seq: 0x01020304,
    timestamp: 0x05060708090a0bn,
    payload: new Uint8Array([0x78, 0x79]),
  });
  assert.equal(HEADER_SIZE, 18);
  assert.equal(hex(frame), "1001" + "01020304" + "0005060708090a0b" + "00000002" + "7879");
});

test("truncated header is reported before an oversized length", () => {
  const oversized = fromHex("10 00 00000000 0000000000000000 ffffffff");
  assert.equal(codeOf(() => decodeFrame(oversized.subarray(0, 17))), ErrorCode.BAD_FRAME);
  assert.equal(codeOf(() => decodeFrame(oversized)), ErrorCode.TOO_LARGE);
});

test("maxPayloadBytes is inclusive and configurable", () => {
  const frame = audioFrame(new Uint8Array(100));
  assert.equal(decodeFrame(frame, { maxPayloadBytes: 100 }).payload.length, 100);
  assert.equal(codeOf(() => decodeFrame(frame, { maxPayloadBytes: 99 })), ErrorCode.TOO_LARGE);
});

test("decodes a frame that sits at an offset inside a larger buffer", () => {
  const frame = pingFrame(new Uint8Array([1, 2, 3]), { seq: 9, timestamp: 480 });
  const big = new Uint8Array(frame.length + 7);
  big.set(frame, 5);
  const decoded = decodeFrame(big.subarray(5, 5 + frame.length));
  assert.deepEqual([decoded.type, decoded.seq, decoded.timestamp, [...decoded.payload]], [0x31, 9, 480, [1, 2, 3]]);
  assert.equal(decodeFrame(frame.buffer).seq, 9); // an ArrayBuffer, as WebSocket delivers it
});

test("timestamps above 2^53 - 1 decode as BigInt, below as Number", () => {
  const big = 2n ** 64n - 1n;
  assert.equal(decodeFrame(encodeFrame({ type: MessageType.PING, timestamp: big })).timestamp, big);
  assert.equal(decodeFrame(encodeFrame({ type: MessageType.PING, timestamp: 2 ** 40 })).timestamp, 2 ** 40);
});

test("unknown types decode, marked unknown; reserved flag bits are kept", () => {
  const frame = decodeFrame(encodeFrame({ type: 0x7e, flags: 0xfe }));
  assert.deepEqual([frame.type, frame.known, frame.flags], [0x7e, false, 0xfe]);
  assert.equal(frame.flags & Flags.SEGMENT_START, 0);
});

test("encodeFrame refuses fields that do not fit", () => {
  for (const bad of [{ type: 256 }, { type: 1, flags: -1 }, { type: 1, seq: 2 ** 32 }, { type: 1, timestamp: 2n ** 64n }]) {
    assert.throws(() => encodeFrame(bad), RangeError, JSON.stringify(bad, (_, x) => String(x)));
  }
});

test("sequence numbers wrap at 2^32", () => {
  assert.equal(nextSeq(0), 1);
  assert.equal(nextSeq(0xffffffff), 0);
});

test("PONG echoes the PING payload; PING payloads over 125 bytes are refused", () => {
  const ping = decodeFrame(pingFrame(new Uint8Array([7, 8]), { seq: 3 }));
  const pong = decodeFrame(pongFrame(ping, { seq: 11, timestamp: 960 }));
  assert.deepEqual([pong.type, pong.seq, pong.timestamp, [...pong.payload]], [MessageType.PONG, 11, 960, [7, 8]]);
  assert.throws(() => pingFrame(new Uint8Array(126)), RangeError);
  const bigPing = { payload: new Uint8Array(126) };
  assert.equal(codeOf(() => pongFrame(bigPing)), ErrorCode.BAD_MESSAGE);
});

// ------------------------------------------------------------------ messages

test("default HELLO has the same bytes as Python's Hello(version=1)", () => {
  const python =
    '{"version":1,"token":null,"input":{"codec":"opus","sample_rate":48000,"channels":1},' +
    '"output":{"codec":"opus","sample_rate":48000},"options":{},"client":null}';
  assert.equal(new TextDecoder().decode(decodeFrame(helloFrame()).payload), python);
});

test("controlFrame carries the control as compact JSON", () => {
  const frame = decodeFrame(controlFrame({ type: "playback_mark", played_samples: 960, segment: 0 }, { seq: 4 }));
  assert.equal(frame.type, MessageType.CONTROL);
  assert.equal(new TextDecoder().decode(frame.payload), '{"type":"playback_mark","played_samples":960,"segment":0}');
  assert.throws(() => controlFrame({ played_samples: 1 }), TypeError);
});

test("unknown event types parse, marked unknown", () => {
  const event = parseEvent(encodeJson({ type: "emotion", label: "happy" }));
  assert.deepEqual(event, { type: "emotion", label: "happy", known: false });
});

test("bad JSON is BAD_JSON, a JSON non-object or an event without type is BAD_MESSAGE", () => {
  assert.equal(codeOf(() => decodeJson(new Uint8Array([0x7b, 0xff, 0x7d]))), ErrorCode.BAD_JSON);
  assert.equal(codeOf(() => decodeJson(encodeJson("x").subarray(0, 2))), ErrorCode.BAD_JSON);
  assert.equal(codeOf(() => decodeJson(encodeJson([1]))), ErrorCode.BAD_MESSAGE);
  assert.equal(codeOf(() => parseEvent(encodeJson({ text: "hi" }))), ErrorCode.BAD_MESSAGE);
  assert.equal(codeOf(() => parseReady(encodeJson({ version: 1 }))), ErrorCode.BAD_MESSAGE);
});

test("ERROR payload shorter than 2 bytes is BAD_MESSAGE; broken UTF-8 text is replaced", () => {
  assert.equal(codeOf(() => parseError(new Uint8Array([0x0f]))), ErrorCode.BAD_MESSAGE);
  assert.equal(parseError(new Uint8Array([0x0f, 0xa7, 0x61, 0xff])).message, "a\ufffd");
});

test("an unknown error code keeps its number and counts as fatal", () => {
  assert.deepEqual(parseError(new Uint8Array([0x13, 0x88])), { code: 5000, name: undefined, message: "", fatal: true });
});

test("BYE frame round-trips its reason", () => {
  const frame = decodeFrame(byeFrame(ErrorCode.IDLE_TIMEOUT, "zzz", { seq: 2 }));
  assert.deepEqual(parseBye(frame.payload), { code: 4011, reason: "zzz" });
  assert.equal(hex(decodeFrame(byeFrame()).payload), "0000");
});

// ------------------------------------------------------------------ error codes (from the spec table)

test("error codes have the numbers of the spec", () => {
  assert.deepEqual({ ...ErrorCode }, {
    BAD_FRAME: 4000, LENGTH_MISMATCH: 4001, TOO_LARGE: 4002, BAD_JSON: 4003, BAD_MESSAGE: 4004,
    UNSUPPORTED_VERSION: 4005, HANDSHAKE_REQUIRED: 4006, AUTH_FAILED: 4007, UNSUPPORTED_CODEC: 4008,
    BAD_AUDIO: 4009, SERVER_BUSY: 4010, IDLE_TIMEOUT: 4011, SHUTTING_DOWN: 4012, INTERNAL: 4013,
    TOO_MANY_ERRORS: 4014, RATE_LIMITED: 4015,
  });
});

test("fatal codes after READY are those of the spec; all are fatal during the handshake", () => {
  const fatal = Object.entries(ErrorCode).filter(([, code]) => isFatal(code)).map(([name]) => name);
  assert.deepEqual(fatal.sort(), [
    "AUTH_FAILED", "HANDSHAKE_REQUIRED", "IDLE_TIMEOUT", "SERVER_BUSY", "SHUTTING_DOWN",
    "TOO_MANY_ERRORS", "UNSUPPORTED_CODEC", "UNSUPPORTED_VERSION",
  ]);
  assert.ok(Object.values(ErrorCode).every((code) => isFatal(code, { duringHandshake: true })));
});
