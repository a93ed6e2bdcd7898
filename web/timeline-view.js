// What the agent did, in order: dialogue states, tool calls and results, interruptions,
// connection changes. Each entry shows the time since connecting. DOM only.

const MAX_ENTRIES = 200;

export class TimelineView {
  /** @param {HTMLOListElement} list */
  constructor(list) {
    this.list = list;
    this.startedAt = performance.now();
  }

  restart() {
    this.startedAt = performance.now();
  }

  clear() {
    this.list.replaceChildren();
  }

  /**
   * @param {"state"|"tool"|"result"|"cut"|"info"|"error"|"eot"|"turn"} kind picks the marker colour
   * @param {string} title short, bold
   * @param {string} [detail] a line of JSON or text, shown in monospace
   */
  add(kind, title, detail = "") {
    const item = document.createElement("li");
    item.className = `entry ${kind}`;
    const time = document.createElement("time");
    const seconds = (performance.now() - this.startedAt) / 1000;
    time.textContent = `${seconds.toFixed(1)} s`;
    const head = document.createElement("strong");
    head.textContent = title;
    item.append(time, head);
    if (detail) {
      const code = document.createElement("code");
      code.textContent = detail;
      item.append(code);
    }
    this.list.append(item);
    while (this.list.children.length > MAX_ENTRIES) this.list.firstElementChild.remove();
    this.list.scrollTop = this.list.scrollHeight;
  }
}

/** Compact one-line JSON for tool arguments and results, cut at `max` characters. */
export function brief(value, max = 120) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** Filled dialogue slots as "party_size 4 · time 19:00"; empty ones are left out. */
export function describeSlots(slots) {
  const filled = Object.entries(slots ?? {}).filter(([, v]) => v !== null && v !== undefined && v !== "");
  if (!filled.length) return "no details yet";
  return filled.map(([k, v]) => `${k.replaceAll("_", " ")} ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ");
}

/** An end_of_turn decision as "ends with 'for' · P(complete) 0.04 · waits 2.0 s". */
export function describeTurnDecision(event) {
  const parts = [event.reason, `P(complete) ${Number(event.probability).toFixed(2)}`];
  parts.push(event.complete ? `ends after ${formatSeconds(event.wait_ms)} of silence`
    : `listening up to ${formatSeconds(event.wait_ms)} more`);
  return parts.join(" · ");
}

/** Why a reply was cut, in words, for the interrupted event's `reason`. */
const CUT_REASONS = {
  barge_in: "you spoke over it",
  client: "stopped",
  text: "a typed message",
  dtmf: "keypad",
  continuation: "you were still speaking: one turn",
  call_end: "the call is ending",
};

/** An interrupted event as "turn 2 after 1.4 s of audio · you spoke over it". */
export function describeCut(event) {
  const why = CUT_REASONS[event.reason] ?? event.reason;
  const line = `turn ${event.turn} after ${formatSeconds(event.played_ms)} of audio`;
  return why ? `${line} · ${why}` : line;
}

/** What the page says when the agent ends the call (call_ending `reason`). */
export const CALL_ENDINGS = Object.freeze({
  hang_up: "The agent ended the call.",
  goodbye: "The conversation is over: the agent said goodbye.",
  no_response: "The call ended: no answer to the agent's prompts.",
  max_duration: "The call reached its time limit.",
});

function formatSeconds(ms) {
  return `${(Number(ms) / 1000).toFixed(1)} s`;
}
