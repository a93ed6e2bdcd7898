// How an interrupted reply is split into what was heard and what was not. Run: node --test web/tests/
import { test } from "node:test";
import assert from "node:assert/strict";

import { splitHeard } from "../conversation-view.js";

test("splitHeard keeps the heard words and marks the rest of the reply", () => {
  assert.deepEqual(splitHeard("Once upon a time, a dragon baked bread.", "Once upon a time,"),
    ["Once upon a time,", " a dragon baked bread."]);
});

test("splitHeard marks everything unheard when nothing was heard", () => {
  assert.deepEqual(splitHeard("Once upon a time.", ""), ["", "Once upon a time."]);
  assert.deepEqual(splitHeard("Once upon a time.", "  "), ["", "Once upon a time."]);
});

test("splitHeard trusts the server when the texts differ", () => {
  assert.deepEqual(splitHeard("**Once** upon a time.", "Once upon"), ["Once upon", ""]);
});

test("splitHeard leaves a fully heard reply whole", () => {
  assert.deepEqual(splitHeard("Paris.", "Paris."), ["Paris.", ""]);
});
