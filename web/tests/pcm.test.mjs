// PCM16 conversion and levels. Run: node --test web/tests/
import { test } from "node:test";
import assert from "node:assert/strict";

import { floatToPcm16, levels, pcm16ToFloat } from "../pcm.js";

test("float samples become little-endian int16", () => {
  const bytes = floatToPcm16(Float32Array.from([0, 1, -1, 0.5]));
  assert.deepEqual(Array.from(bytes), [0x00, 0x00, 0xff, 0x7f, 0x00, 0x80, 0x00, 0x40]);
});

test("values outside [-1, 1] are clipped, not wrapped", () => {
  const back = pcm16ToFloat(floatToPcm16(Float32Array.from([2, -3])));
  assert.deepEqual(Array.from(back), [32767 / 32768, -1]);
});

test("a round trip keeps samples within two quantisation steps", () => {
  const samples = Float32Array.from({ length: 100 }, (_, i) => Math.sin(i / 7) * 0.8);
  const back = pcm16ToFloat(floatToPcm16(samples));
  for (let i = 0; i < samples.length; i++) assert.ok(Math.abs(back[i] - samples[i]) < 2 / 32768);
});

test("reads from a view at an odd byte offset", () => {
  const buffer = new Uint8Array(5);
  buffer.set([0x00, 0x40], 1);
  assert.deepEqual(Array.from(pcm16ToFloat(buffer.subarray(1, 3))), [0.5]);
});

test("levels: peak and RMS of a block", () => {
  const { peak, rms } = levels(Float32Array.from([0.5, -0.5, 0.5, -0.5]));
  assert.equal(peak, 0.5);
  assert.equal(rms, 0.5);
  assert.deepEqual(levels(new Float32Array(0)), { peak: 0, rms: 0 });
});
