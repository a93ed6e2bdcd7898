// Per-turn latency (turn_metrics events) as a stacked bar chart in SVG, no libraries.
// Each bar is one turn: the time from the end of the user's speech to the first reply audio,
// split into the stages that used it. `latencyBars` is the pure layout; `renderLatencyChart`
// draws it.

/** Stages in pipeline order; each bar segment runs from the previous stage's mark to its own. */
export const STAGES = Object.freeze([
  { key: "final_transcript", label: "Transcript", color: "var(--stage-asr)" },
  { key: "first_llm_token", label: "First token", color: "var(--stage-llm)" },
  { key: "first_tts_audio", label: "First audio", color: "var(--stage-tts)" },
  { key: "first_audio_sent", label: "Sent", color: "var(--stage-send)" },
]);

/** A round axis maximum >= ms: 1, 2 or 5 times a power of ten. */
export function niceCeiling(ms) {
  if (!(ms > 0)) return 1000;
  const power = 10 ** Math.floor(Math.log10(ms));
  return [1, 2, 5, 10].map((m) => m * power).find((v) => v >= ms);
}

/**
 * Layout of the chart.
 * @param {{turn: number, stages_ms: object}[]} turns oldest first
 * @param {object} o sizes in SVG units; `maxTurns` newest turns are shown
 */
export function latencyBars(turns, { width = 320, height = 140, maxTurns = 12, axisWidth = 40, bottom = 16, top = 8 } = {}) {
  const shown = turns.slice(-maxTurns);
  const totals = shown.map((t) => Math.max(0, ...STAGES.map((s) => t.stages_ms[s.key] ?? 0)));
  const scaleMs = niceCeiling(Math.max(0, ...totals));
  const plotHeight = height - bottom - top;
  const y = (ms) => top + plotHeight - (Math.min(ms, scaleMs) / scaleMs) * plotHeight;
  const slot = (width - axisWidth) / Math.max(shown.length, 8); // few turns: wider bars, not a wall of them
  const barWidth = Math.min(slot * 0.6, 26);
  const bars = shown.map((t, i) => {
    let previous = 0;
    const segments = [];
    for (const stage of STAGES) {
      const mark = t.stages_ms[stage.key];
      if (typeof mark !== "number") continue;
      const end = Math.max(previous, mark);
      segments.push({ stage: stage.key, label: stage.label, color: stage.color, ms: end - previous,
        y: y(end), height: y(previous) - y(end) });
      previous = end;
    }
    return { turn: t.turn, totalMs: totals[i], x: axisWidth + i * slot + (slot - barWidth) / 2, width: barWidth, segments };
  });
  const ticks = [0, 0.5, 1].map((f) => ({ y: y(f * scaleMs), label: formatMs(f * scaleMs) }));
  return { scaleMs, bars, ticks, plotHeight, width, height, axisWidth };
}

/** 850 -> "850 ms", 1850 -> "1.85 s". */
export function formatMs(ms) {
  if (typeof ms !== "number" || Number.isNaN(ms)) return "–";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  parent.append(node);
  return node;
}

/** Redraw `svg` (an <svg> element) for `turns`. */
export function renderLatencyChart(svg, turns) {
  const layout = latencyBars(turns);
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${layout.width} ${layout.height}`);
  if (!layout.bars.length) {
    const note = el("text", { x: layout.width / 2, y: layout.height / 2, class: "empty-note", "text-anchor": "middle" }, svg);
    note.textContent = "No turns yet";
    return;
  }
  for (const tick of layout.ticks) {
    el("line", { x1: layout.axisWidth, x2: layout.width, y1: tick.y, y2: tick.y, class: "grid" }, svg);
    const label = el("text", { x: layout.axisWidth - 4, y: tick.y + 3, class: "tick", "text-anchor": "end" }, svg);
    label.textContent = tick.label;
  }
  for (const bar of layout.bars) {
    const group = el("g", { class: "bar" }, svg);
    el("title", {}, group).textContent =
      `Turn ${bar.turn}: ${formatMs(bar.totalMs)} — ` + bar.segments.map((s) => `${s.label} +${formatMs(s.ms)}`).join(", ");
    for (const s of bar.segments) {
      el("rect", { x: bar.x, y: s.y, width: bar.width, height: Math.max(0, s.height), fill: s.color, rx: 1.5 }, group);
    }
    const label = el("text", { x: bar.x + bar.width / 2, y: layout.height - 4, class: "tick", "text-anchor": "middle" }, svg);
    label.textContent = String(bar.turn);
  }
}
