// PlaybackQueue: the ring buffer the playback worklet plays from. Run: node --test web/tests/
import { test } from "node:test";
import assert from "node:assert/strict";

import { PlaybackQueue } from "../playback-queue.js";

const ramp = (n, start = 0) => Float32Array.from({ length: n }, (_, i) => (start + i) / 1000);
const queue = (capacitySamples = 64, marginSamples = 0) => new PlaybackQueue({ capacitySamples, marginSamples });

test("plays samples in the order they were pushed", () => {
  const q = queue();
  q.push(ramp(5), 0);
  q.push(ramp(5, 5), 5);
  const out = new Float32Array(10);
  assert.equal(q.pull(out), 10);
  assert.deepEqual(out, ramp(10));
});

test("pads with silence when the buffer runs dry and counts an underrun", () => {
  const q = queue();
  q.push(ramp(3, 1), 0);
  const out = new Float32Array(6).fill(9);
  assert.equal(q.pull(out), 3);
  assert.deepEqual(Array.from(out.subarray(3)), [0, 0, 0]);
  assert.equal(q.underruns, 1);
});

test("wraps around the end of the ring without losing samples", () => {
  const q = queue(8);
  const out = new Float32Array(6);
  q.push(ramp(6), 0);
  q.pull(out);
  q.push(ramp(6, 6), 6); // crosses the end of the 8-sample ring
  assert.equal(q.pull(out), 6);
  assert.deepEqual(out, ramp(6, 6));
});

test("drops and counts what does not fit", () => {
  const q = queue(8);
  q.push(ramp(10), 0);
  assert.equal(q.bufferedSamples, 8);
  assert.equal(q.samplesDropped, 2);
});

test("waits for the jitter margin before it starts playing", () => {
  const q = queue(64, 8);
  const out = new Float32Array(4);
  q.push(ramp(4), 0);
  assert.equal(q.pull(out), 0, "below the margin: silence");
  q.push(ramp(4, 4), 4);
  assert.equal(q.pull(out), 4, "margin reached: plays");
  assert.equal(q.pull(out), 4, "keeps playing below the margin once started");
});

test("the end of a segment plays out a tail shorter than the margin", () => {
  const q = queue(64, 8);
  q.push(ramp(3), 0);
  q.end();
  assert.equal(q.pull(new Float32Array(4)), 3);
  assert.equal(q.underruns, 0, "an ended segment running dry is not an underrun");
});

test("playedPosition follows the stream timestamps of what was played", () => {
  const q = queue();
  q.push(ramp(4), 960);
  q.pull(new Float32Array(3));
  assert.equal(q.playedPosition, 963);
  q.pull(new Float32Array(3));
  assert.equal(q.playedPosition, 964);
});

test("playedPosition jumps to a new reply's timestamp after a gap in the stream", () => {
  const q = queue();
  q.push(ramp(4), 100);
  q.push(ramp(4), 500); // the server's next reply, after a cut
  q.pull(new Float32Array(6));
  assert.equal(q.playedPosition, 502);
});

test("flush discards everything queued and reports how much", () => {
  const q = queue();
  q.push(ramp(10), 0);
  q.pull(new Float32Array(4));
  assert.equal(q.flush(), 6);
  assert.equal(q.bufferedSamples, 0);
  assert.equal(q.pull(new Float32Array(4)), 0);
  assert.equal(q.playedPosition, 4, "what was heard stays counted");
  assert.equal(q.samplesPlayed, 4);
});

test("after a flush new audio plays from its own timestamp", () => {
  const q = queue();
  q.push(ramp(10), 0);
  q.pull(new Float32Array(2));
  q.flush();
  q.push(ramp(4, 50), 2000);
  const out = new Float32Array(4);
  q.pull(out);
  assert.deepEqual(out, ramp(4, 50));
  assert.equal(q.playedPosition, 2004);
});
