"""`--html FILE`: one self-contained page (inline CSS and SVG, no script, no CDN) made from the JSON
report: pass rate per category, then every scenario with its transcript, tool calls, state,
failed checks highlighted, and a bar chart of voice-to-voice latency per turn."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from voice.eval.report import percent

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em} table{border-collapse:collapse}
td,th{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left}
.passed{color:#176c2f} .failed,.error{color:#b3261e} .not_run{color:#888}
details{border:1px solid #ddd;border-radius:6px;margin:.5em 0;padding:.3em .8em}
details.failed,details.error{border-color:#e0a19c;background:#fff8f7} summary{cursor:pointer;font-weight:600}
.turn{border-left:3px solid #ccc;margin:.6em 0;padding:.2em .8em} .turn.failed{border-color:#b3261e}
.user{color:#234a8f} .agent{color:#222} .meta{color:#666;font-size:.9em}
.check-fail{background:#fde7e5;color:#8c1d18;padding:.1em .4em;border-radius:4px;display:block;margin:.15em 0}
code{background:#f3f3f3;padding:0 .25em;border-radius:3px}
"""


def _bars(values: list[tuple[str, float | None]], *, unit: str, limit: float | None = None, top: float = 0.0,
          width: int = 520, bar_h: int = 16) -> str:
    """A horizontal bar chart as inline SVG: one labelled bar per value (None: no bar); `top` is
    the value of a full bar (charts with the same `top` compare by eye)."""
    top = max([v for _, v in values if v is not None] + [limit or 0, top, 1.0])
    height = bar_h * len(values) + 8
    rows = []
    for i, (label, v) in enumerate(values):
        y = 4 + i * bar_h
        rows.append(f'<text x="0" y="{y + bar_h - 4}" font-size="11">{escape(label[:22])}</text>')
        if v is not None:
            w = max(1.0, (width - 230) * v / top)
            color = "#b3261e" if limit is not None and v > limit else "#4a7bd0"
            rows.append(f'<rect x="130" y="{y + 2}" width="{w:.1f}" height="{bar_h - 5}" fill="{color}"/>'
                        f'<text x="{134 + w:.1f}" y="{y + bar_h - 4}" font-size="11">{v:.0f} {unit}</text>')
        else:
            rows.append(f'<text x="130" y="{y + bar_h - 4}" font-size="11" fill="#888">no value</text>')
    if limit is not None:
        x = 130 + (width - 230) * limit / top
        rows.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height}" stroke="#b3261e" stroke-dasharray="3,3"/>')
    return f'<svg width="{width}" height="{height}" role="img">{"".join(rows)}</svg>'


def _turn(t: dict[str, Any]) -> str:
    fails = "".join(f'<span class="check-fail">{escape(c["name"])}: {escape(c["detail"])}</span>'
                    for c in t["checks"] if not c["ok"])
    tools = "; ".join(f'{u["name"]}({json.dumps(u["arguments"], ensure_ascii=False)})'
                      + ("" if u["ok"] is None else " ✓" if u["ok"] else f' ✗ {json.dumps(u["result"])}')
                      for u in t["tools"])
    lines = [f'<div class="user">user ({escape(t["kind"])}): {escape(t["input"])}</div>']
    if t["kind"] in ("say", "audio"):
        lines.append(f'<div class="meta">heard: {escape(t["transcript"] or "(nothing)")}</div>')
    lines.append(f'<div class="agent">agent: {escape(t["reply"] or "(nothing)")}</div>')
    if t["heard_text"] is not None:
        lines.append(f'<div class="meta">cut; the user heard: {escape(t["heard_text"])}</div>')
    if t["audio_transcript"] is not None:
        lines.append(f'<div class="meta">reply audio heard as: {escape(t["audio_transcript"])}</div>')
    meta = [f"tools: {escape(tools)}" if tools else "", f'state: {escape(str(t["state"]))}' if t["state"] else "",
            f'voice-to-voice: {t["voice_to_voice_ms"]:.0f} ms' if t["voice_to_voice_ms"] is not None else "",
            f'line {t["line"]}']
    lines.append(f'<div class="meta">{" · ".join(m for m in meta if m)}</div>')
    return f'<div class="turn {t["status"]}"><b class="{t["status"]}">turn {t["index"] + 1}: {t["status"]}</b>' \
           f'{"".join(lines)}{fails}</div>'


def _scenario(sc: dict[str, Any], top_ms: float) -> str:
    turns = "".join(_turn(t) for t in sc["turns"])
    chart = _bars([(f'turn {t["index"] + 1}', t["voice_to_voice_ms"]) for t in sc["turns"] if t["status"] != "not_run"],
                  unit="ms", top=top_ms)
    error = f'<p class="error">{escape(sc["error"])}</p>' if sc["error"] else ""
    opened = " open" if sc["status"] != "passed" else ""
    return (f'<details class="{sc["status"]}"{opened}><summary><span class="{sc["status"]}">{sc["status"]}</span> '
            f'{escape(sc["name"])} <span class="meta">{escape(sc["agent"])} · {escape(sc["category"])} · '
            f'{escape(", ".join(sc["tags"]))} · {sc["duration_s"]:.0f} s</span></summary>'
            f'<p class="meta">{escape(sc["description"])} <code>{escape(str(sc["file"]))}</code></p>{error}{turns}'
            f'<div class="meta">voice-to-voice per turn</div>{chart}</details>')


def render(report: dict[str, Any]) -> str:
    s = report["summary"]
    rows = "".join(f'<tr><td>{escape(n)}</td><td>{c["scenarios"]}</td><td>{c["passed"]}</td>'
                   f'<td>{percent(c["pass_rate"])}</td></tr>' for n, c in report["categories"].items())
    rows += (f'<tr><th>overall</th><th>{s["scenarios"]}</th><th>{s["passed"]}</th>'
             f'<th>{percent(s["pass_rate"])}</th></tr>')
    chart = _bars([(n, 100 * (c["pass_rate"] or 0)) for n, c in report["categories"].items()], unit="%")
    models = ", ".join(f"{k}: {v}" for k, v in report["models"].items())
    failed = ", ".join(f"{k} {v}" for k, v in s["failed_checks"].items()) or "none"
    top_ms = max([t["voice_to_voice_ms"] or 0 for sc in report["scenarios"] for t in sc["turns"]] + [1000])
    body = "".join(_scenario(sc, top_ms) for sc in sorted(report["scenarios"], key=lambda x: x["status"] == "passed"))
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>voice eval {escape(report["started"])}</title>'
            f'<style>{CSS}</style></head><body><h1>voice eval</h1>'
            f'<p class="meta">{escape(report["started"])} · {report["duration_s"]:.0f} s · {escape(report["url"])}'
            f'<br>{escape(models)}</p><table><tr><th>category</th><th>scenarios</th><th>passed</th><th>rate</th></tr>'
            f'{rows}</table>{chart}<p>turns passed: {s["turns_passed"]}/{s["turns_run"]} · failed checks: '
            f'{escape(failed)}</p><h2>Scenarios</h2>{body}</body></html>\n')
