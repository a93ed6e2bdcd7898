// Text helpers of the timeline. Run: node --test web/tests/
import { test } from "node:test";
import assert from "node:assert/strict";

import { brief, describeSlots } from "../timeline-view.js";

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
