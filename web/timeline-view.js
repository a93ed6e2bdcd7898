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
   * @param {"state"|"tool"|"result"|"cut"|"info"|"error"} kind picks the marker colour
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
