// Error messages a person reads, and which problems reconnect. Run: node --test web/tests/
import { test } from "node:test";
import assert from "node:assert/strict";

import { microphoneProblem, sessionProblem } from "../error-messages.js";
import { ErrorCode } from "../protocol.js";

test("a denied microphone permission says how to allow it", () => {
  assert.match(microphoneProblem({ name: "NotAllowedError", message: "Permission denied" }), /permission was denied/i);
});

test("an insecure page explains localhost and https", () => {
  assert.match(microphoneProblem(new TypeError("x"), { secure: false }), /localhost.*https/);
});

test("a missing microphone is named as such", () => {
  assert.match(microphoneProblem({ name: "NotFoundError" }), /No microphone/);
});

test("auth failure asks for a token and does not retry", () => {
  const p = sessionProblem({ code: ErrorCode.AUTH_FAILED, reason: "missing or wrong token" });
  assert.match(p.message, /token/);
  assert.equal(p.retry, false);
});

test("a busy server retries", () => {
  const p = sessionProblem({ code: ErrorCode.SERVER_BUSY, reason: "at its limit of 16 sessions" });
  assert.match(p.message, /busy/);
  assert.equal(p.retry, true);
});

test("a server that never answered is 'cannot reach', and retries", () => {
  const p = sessionProblem({ code: 1006, opened: false, url: "ws://localhost:8765/ws" });
  assert.match(p.message, /Cannot reach the server at ws:\/\/localhost:8765\/ws/);
  assert.equal(p.retry, true);
});

test("a dropped live connection is 'lost', and retries", () => {
  const p = sessionProblem({ code: 1006, opened: true });
  assert.match(p.message, /lost/);
  assert.equal(p.retry, true);
});

test("an unsupported codec suggests the PCM16 fallback and does not retry", () => {
  const p = sessionProblem({ code: ErrorCode.UNSUPPORTED_CODEC });
  assert.match(p.message, /codec=pcm16/);
  assert.equal(p.retry, false);
});

test("a normal close is no problem", () => {
  assert.deepEqual(sessionProblem({ code: 1000 }), { message: "", retry: false });
});
