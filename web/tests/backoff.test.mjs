// Backoff: reconnect delays. Run: node --test web/tests/
import { test } from "node:test";
import assert from "node:assert/strict";

import { Backoff } from "../backoff.js";

const middle = () => 0.5; // no jitter

test("delays double from the initial delay", () => {
  const b = new Backoff({ initialMs: 500, random: middle });
  assert.deepEqual([b.next(), b.next(), b.next(), b.next()], [500, 1000, 2000, 4000]);
});

test("delays never exceed the maximum", () => {
  const b = new Backoff({ initialMs: 1000, maxMs: 5000, random: () => 0.999 });
  const delays = Array.from({ length: 10 }, () => b.next());
  assert.ok(delays.every((d) => d <= 5000), delays.join());
  assert.equal(delays.at(-1), 5000);
});

test("jitter spreads a delay by at most the given fraction", () => {
  const low = new Backoff({ initialMs: 1000, jitter: 0.2, random: () => 0 }).next();
  const high = new Backoff({ initialMs: 1000, jitter: 0.2, random: () => 0.9999 }).next();
  assert.equal(low, 800);
  assert.ok(high > 1190 && high <= 1200, String(high));
});

test("reset starts again from the initial delay", () => {
  const b = new Backoff({ initialMs: 300, random: middle });
  b.next();
  b.next();
  b.reset();
  assert.equal(b.attempt, 0);
  assert.equal(b.next(), 300);
});

test("counts attempts", () => {
  const b = new Backoff({ random: middle });
  b.next();
  b.next();
  assert.equal(b.attempt, 2);
});
