// Latency chart layout. Run: node --test web/tests/
import { test } from "node:test";
import assert from "node:assert/strict";

import { formatMs, latencyBars, niceCeiling } from "../latency-chart.js";

const turn = (n, [asr, llm, tts, sent]) => ({
  turn: n,
  stages_ms: { final_transcript: asr, first_llm_token: llm, first_tts_audio: tts, first_audio_sent: sent, voice_to_voice: sent },
});

test("niceCeiling rounds up to 1, 2 or 5 times a power of ten", () => {
  assert.deepEqual([niceCeiling(80), niceCeiling(1200), niceCeiling(2600), niceCeiling(5000), niceCeiling(0)],
    [100, 2000, 5000, 5000, 1000]);
});

test("formatMs: ms below a second, seconds above", () => {
  assert.deepEqual([formatMs(412.4), formatMs(1850), formatMs(12345), formatMs(undefined)],
    ["412 ms", "1.85 s", "12.3 s", "–"]);
});

test("each bar stacks its stages and is as tall as voice to voice", () => {
  const { bars, plotHeight, scaleMs } = latencyBars([turn(1, [400, 700, 900, 1000])], { height: 124, bottom: 16, top: 8 });
  assert.equal(scaleMs, 1000);
  const [bar] = bars;
  assert.deepEqual(bar.segments.map((s) => s.ms), [400, 300, 200, 100]);
  const total = bar.segments.reduce((sum, s) => sum + s.height, 0);
  assert.ok(Math.abs(total - plotHeight) < 1e-9);
  assert.equal(bar.segments.at(-1).y, 8, "the tallest bar reaches the top of the plot");
});

test("a stage that went backwards adds no negative segment", () => {
  const { bars } = latencyBars([turn(1, [500, 400, 900, 950])]);
  assert.ok(bars[0].segments.every((s) => s.ms >= 0 && s.height >= 0));
});

test("only the newest turns are shown, oldest on the left", () => {
  const turns = Array.from({ length: 15 }, (_, i) => turn(i + 1, [100, 200, 300, 400]));
  const { bars } = latencyBars(turns, { maxTurns: 12 });
  assert.equal(bars.length, 12);
  assert.equal(bars[0].turn, 4);
  assert.ok(bars[0].x < bars[11].x);
});

test("missing stages are skipped", () => {
  const { bars } = latencyBars([{ turn: 1, stages_ms: { final_transcript: 300 } }]);
  assert.deepEqual(bars[0].segments.map((s) => s.stage), ["final_transcript"]);
});
