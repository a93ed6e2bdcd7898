// The level meter's dB scale. Run: node --test web/tests/
import { test } from "node:test";
import assert from "node:assert/strict";

import { levelToUnit } from "../level-meter.js";

test("full scale fills the meter and -60 dBFS empties it", () => {
  assert.equal(levelToUnit(1), 1);
  assert.equal(levelToUnit(0.001), 0);
});

test("silence and overs stay inside 0..1", () => {
  assert.equal(levelToUnit(0), 0);
  assert.equal(levelToUnit(4), 1);
});

test("-20 dBFS speech sits two thirds up", () => {
  assert.ok(Math.abs(levelToUnit(0.1) - 2 / 3) < 1e-9);
});
