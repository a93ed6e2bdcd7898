// Text helpers of the timeline. Run: node --test web/tests/
import { test } from "node:test";
import assert from "node:assert/strict";

import { CALL_ENDINGS, brief, describeCut, describeSlots, describeTurnDecision } from "../timeline-view.js";

test("brief shows objects as one line of JSON", () => {
  assert.equal(brief({ tz: "UTC" }), '{"tz":"UTC"}');
});

test("brief cuts long text with an ellipsis", () => {
  const text = brief("x".repeat(200), 20);
  assert.equal(text.length, 20);
  assert.ok(text.endsWith("…"));
});

test("describeSlots lists the filled slots and skips empty ones", () => {
  assert.equal(describeSlots({ party_size: 4, time: "19:00", name: null, date: "" }), "party size 4 · time 19:00");
});

test("describeSlots says when nothing is filled yet", () => {
  assert.equal(describeSlots({ date: null }), "no details yet");
  assert.equal(describeSlots(undefined), "no details yet");
});

test("describeTurnDecision says why, how sure, and how long the server waits", () => {
  const open = { utterance: 3, complete: false, probability: 0.04, wait_ms: 2000, reason: "ends with 'for'" };
  assert.equal(describeTurnDecision(open), "ends with 'for' · P(complete) 0.04 · listening up to 2.0 s more");
  const done = { ...open, complete: true, probability: 0.93, wait_ms: 250, reason: "ends with '?'" };
  assert.equal(describeTurnDecision(done), "ends with '?' · P(complete) 0.93 · ends after 0.3 s of silence");
});

test("describeCut names the reason of a cut, and copes with a reason it does not know", () => {
  assert.equal(describeCut({ turn: 2, played_ms: 1400, reason: "barge_in" }), "turn 2 after 1.4 s of audio · you spoke over it");
  assert.equal(describeCut({ turn: 2, played_ms: 0, reason: "something_new" }), "turn 2 after 0.0 s of audio · something_new");
  assert.equal(describeCut({ turn: 1, played_ms: 820 }), "turn 1 after 0.8 s of audio");
});

test("every call_ending reason of the spec has a sentence", () => {
  for (const reason of ["hang_up", "goodbye", "no_response", "max_duration"]) assert.ok(CALL_ENDINGS[reason]);
});
