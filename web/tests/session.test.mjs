// VoiceSession: handshake, sequence numbers and errors against a scripted fake server socket.
// Run: node --test web/tests/
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  ErrorCode, Flags, MessageType, decodeFrame, decodeJson, encodeCodeText, encodeFrame, encodeJson, parseBye, pingFrame,
} from "../protocol.js";
import { VoiceSession } from "../session.js";

class FakeSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
  }
  send(bytes) {
    this.sent.push(decodeFrame(bytes));
  }
  close(code) {
    this.closedWith = code;
    this.readyState = 3;
  }
  // --- the server's side
  open() {
    this.readyState = 1;
    this.onopen();
  }
  deliver(frame) {
    const bytes = encodeFrame(frame);
    this.onmessage({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }
  ready() {
    const ready = { version: 1, session_id: "sess-1", input: {}, output: {}, server: "test", options: {} };
    this.deliver({ type: MessageType.READY, payload: encodeJson(ready) });
  }
  drop(code) {
    this.readyState = 3;
    this.onclose({ code, reason: "" });
  }
}

function start(hello = { token: "t0k" }) {
  const log = { closed: [], events: [], errors: [], ready: [] };
  let socket;
  const session = new VoiceSession({
    url: "ws://localhost:1/ws",
    hello,
    createSocket: (url) => (socket = new FakeSocket(url)),
    on: {
      ready: (r) => log.ready.push(r),
      event: (e) => log.events.push(e),
      error: (e) => log.errors.push(e),
      closed: (c) => log.closed.push(c),
    },
  });
  return { session, socket, log };
}

test("sends HELLO with seq 0 as soon as the socket opens", () => {
  const { socket, session } = start({ token: "t0k", options: { agent: "booking" } });
  socket.open();
  const [hello] = socket.sent;
  assert.equal(hello.type, MessageType.HELLO);
  assert.equal(hello.seq, 0);
  const body = decodeJson(hello.payload);
  assert.equal(body.token, "t0k");
  assert.deepEqual(body.options, { agent: "booking" });
  session.close();
});

test("sends no audio or control before READY", () => {
  const { socket, session } = start();
  socket.open();
  assert.equal(session.sendAudio(new Uint8Array(4), 0), false);
  assert.equal(session.sendControl({ type: "interrupt" }), false);
  assert.equal(socket.sent.length, 1);
  session.close();
});

test("after READY audio frames carry increasing seq, timestamps and SEGMENT_START on the first", () => {
  const { socket, session, log } = start();
  socket.open();
  socket.ready();
  assert.equal(log.ready[0].session_id, "sess-1");
  session.sendAudio(new Uint8Array([1, 2]), 0, { first: true });
  session.sendAudio(new Uint8Array([3, 4]), 960);
  const [a, b] = socket.sent.slice(1);
  assert.deepEqual([a.type, a.seq, a.timestamp, a.flags], [MessageType.AUDIO, 1, 0, Flags.SEGMENT_START]);
  assert.deepEqual([b.seq, b.timestamp, b.flags], [2, 960, 0]);
  session.close();
});

test("events are parsed and passed on, unknown types included", () => {
  const { socket, session, log } = start();
  socket.open();
  socket.ready();
  socket.deliver({ type: MessageType.EVENT, payload: encodeJson({ type: "interrupted", turn: 2, played_ms: 820 }) });
  socket.deliver({ type: MessageType.EVENT, payload: encodeJson({ type: "from_the_future" }) });
  assert.deepEqual(log.events.map((e) => [e.type, e.known]), [["interrupted", true], ["from_the_future", false]]);
  session.close();
});

test("an auth failure reports the ERROR's code and text as the reason of the close", () => {
  const { socket, log } = start();
  socket.open();
  socket.deliver({ type: MessageType.ERROR, payload: encodeCodeText(ErrorCode.AUTH_FAILED, "missing or wrong token") });
  socket.drop(ErrorCode.AUTH_FAILED);
  assert.equal(log.errors[0].fatal, true);
  assert.deepEqual(log.closed, [{ code: ErrorCode.AUTH_FAILED, reason: "missing or wrong token", opened: true, ready: false }]);
});

test("a server that is not there closes with 1006 before opening", () => {
  const { socket, log } = start();
  socket.drop(1006);
  assert.deepEqual(log.closed, [{ code: 1006, reason: "", opened: false, ready: false }]);
});

test("answers PING with a PONG echoing its payload", () => {
  const { socket, session } = start();
  socket.open();
  socket.ready();
  const ping = decodeFrame(pingFrame(new Uint8Array([7, 8, 9])));
  socket.deliver(ping);
  const pong = socket.sent.at(-1);
  assert.equal(pong.type, MessageType.PONG);
  assert.deepEqual(Array.from(pong.payload), [7, 8, 9]);
  session.close();
});

test("close sends BYE, closes with 1000 and reports the end once", () => {
  const { socket, session, log } = start();
  socket.open();
  socket.ready();
  session.close();
  session.close();
  socket.drop(1000);
  const bye = socket.sent.at(-1);
  assert.equal(bye.type, MessageType.BYE);
  assert.equal(parseBye(bye.payload).code, 0);
  assert.equal(socket.closedWith, 1000);
  assert.equal(log.closed.length, 1);
});

test("a malformed frame is reported, not thrown", () => {
  const { socket, session, log } = start();
  socket.open();
  socket.onmessage({ data: new Uint8Array([1, 2, 3]).buffer });
  assert.equal(log.errors[0].code, ErrorCode.BAD_FRAME);
  session.close();
});
