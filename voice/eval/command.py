"""`voice eval`: play conversation scenarios against the real server and report what the agent said.

    voice eval                                  # the shipped suite (voice/eval/scenarios), own server
    voice eval --tag ci --json out.json         # the fast typed subset
    voice eval my_scenarios/ --html report.html --url ws://127.0.0.1:8765/ws

Exit codes: 0 every scenario passed, 1 some failed, 2 usage or scenario-file errors (nothing
run), 3 the server could not be started or reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SERVER = 0, 1, 2, 3


def add_parser(sub: Any) -> None:
    """Register `voice eval` on the CLI's subparsers."""
    e = sub.add_parser("eval", help="run conversation scenarios against the real server and report",
                       description="Play YAML conversation scenarios (spoken, typed, DTMF, barge-in) against a real "
                                   "server and check what the agent says and does. See docs/eval.md.")
    e.add_argument("paths", nargs="*", type=Path, help="scenario files or folders (default: the shipped suite)")
    e.add_argument("--tag", action="append", default=[], help="only scenarios with this tag (repeatable)")
    e.add_argument("--name", action="append", default=[], help="only scenarios with this name or glob (repeatable)")
    e.add_argument("--category", action="append", default=[], help="only this category (repeatable)")
    e.add_argument("--agent", action="append", default=[], help="only scenarios of this agent (repeatable)")
    e.add_argument("--url", help="use this server instead of starting one")
    e.add_argument("--token", default=os.environ.get("VOICE_TOKEN"))
    e.add_argument("--config", help="TOML settings for the started server (and for the models named in the report)")
    e.add_argument("--temperature", type=float, default=0.0,
                   help="LLM temperature of the started server (default 0: repeatable runs)")
    e.add_argument("--concurrency", type=int, default=2, help="scenarios at once (default 2)")
    e.add_argument("--json", type=Path, dest="json_out", help="write the JSON report here")
    e.add_argument("--html", type=Path, dest="html_out", help="write a self-contained HTML report here")
    e.add_argument("--audio-model", default="whisper-base", help="Whisper for check_audio (default whisper-base)")
    e.add_argument("--data-dir", type=Path, help="the started server's data folder and log (default: a temp folder)")
    e.add_argument("--server-code", type=Path, help="start the server from this source tree (e.g. a checkout of the "
                                                   "code before a change) instead of the installed package")
    e.add_argument("--list", action="store_true", help="check the files and list the scenarios; run nothing")
    e.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from voice.eval.scenario import ScenarioError, load_scenarios, select, shipped_scenarios_dir

    if args.concurrency < 1:
        print("error: --concurrency must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        scenarios = load_scenarios(args.paths or [shipped_scenarios_dir()])
    except ScenarioError as e:
        print(f"scenario errors (nothing was run):\n{e}", file=sys.stderr)
        return EXIT_USAGE
    chosen = select(scenarios, tags=args.tag, names=args.name, categories=args.category, agents=args.agent)
    if not chosen:
        print("error: no scenario matches the filters", file=sys.stderr)
        return EXIT_USAGE
    if args.list:
        for s in chosen:
            print(f"{s.name:36} {s.agent:9} {s.category:16} {','.join(s.tags):10} {len(s.turns)} turns  {s.path}")
        return EXIT_OK
    try:
        return asyncio.run(run(chosen, args))
    except KeyboardInterrupt:
        return 130


async def run(scenarios: list, args: argparse.Namespace) -> int:
    from voice.eval.html_report import render
    from voice.eval.report import Progress, print_table, to_json
    from voice.eval.runner import RunOptions, run_scenarios
    from voice.eval.server import ServerStartError

    options = RunOptions(url=args.url, token=args.token, config=args.config, temperature=args.temperature,
                         concurrency=args.concurrency, audio_model=args.audio_model, data_dir=args.data_dir,
                         server_code=args.server_code)
    print(f"voice eval: {len(scenarios)} scenarios, {args.concurrency} at a time"
          + ("" if args.url else " (starting a server)"), file=sys.stderr)
    try:
        result = await run_scenarios(scenarios, options, Progress(len(scenarios)))
    except ServerStartError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_SERVER
    report = to_json(result)
    if all(r.status == "error" for r in result.results):
        print(f"error: no scenario could talk to {result.url}: {result.results[0].error}", file=sys.stderr)
        return EXIT_SERVER
    print_table(report)
    for path, text in ((args.json_out, lambda: json.dumps(report, indent=1, ensure_ascii=False) + "\n"),
                       (args.html_out, lambda: render(report))):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text(), encoding="utf-8")
            print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK if report["summary"]["passed"] == len(scenarios) else EXIT_FAILED
