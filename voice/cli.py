"""The one entry point: `voice serve | mic | sip | models`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from voice.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.log_level)
    return args.func(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voice", description="Real-time voice agent server and tools.")
    p.add_argument("--log-level", default=os.environ.get("VOICE_LOG_LEVEL", "warning"),
                   choices=["debug", "info", "warning", "error"], help="default: warning (quiet)")
    sub = p.add_subparsers(title="commands")

    s = sub.add_parser("serve", help="run the voice server")
    s.add_argument("--config", help="TOML settings file")
    s.add_argument("--profile", help="cpu (default) or gpu")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--token", default=None, help="bearer token (required off loopback); env VOICE_SERVER__TOKEN")
    s.add_argument("--asr-model", help="registry name or CTranslate2 folder")
    s.add_argument("--device", choices=["auto", "cpu", "cuda"], help="device for the engines")
    s.add_argument("--workers", type=int, default=1,
                   help="server processes, each with its own engines (SO_REUSEPORT; docs/operations.md)")
    s.add_argument("--port-per-worker", action="store_true",
                   help="with --workers: worker i listens on port+i, for a load balancer in front")
    s.set_defaults(func=cmd_serve)

    m = sub.add_parser("mic", help="stream a microphone / WAV / stdin to a server and print transcripts")
    m.add_argument("--url", default="ws://127.0.0.1:8765/ws")
    m.add_argument("--token", default=os.environ.get("VOICE_TOKEN"))
    m.add_argument("--input", help="WAV file, or - for raw s16le mono on stdin (default: live microphone)")
    m.add_argument("--stdin-rate", type=int, default=16000, help="sample rate of --input - (Hz)")
    m.add_argument("--rate", type=int, default=48000, help="sample rate sent to the server (Hz)")
    m.add_argument("--codec", choices=["opus", "pcm16"], default="opus")
    m.add_argument("--fast", action="store_true", help="send as fast as allowed instead of real time")
    m.add_argument("--record", type=Path, help="save the audio the server sends back to this WAV")
    m.add_argument("--json", action="store_true", help="print every event as one JSON object per line")
    m.add_argument("--no-playback", action="store_true", help="do not play the reply (tests, no speaker)")
    m.add_argument("--seconds", type=float, help="stop the live microphone after this many seconds")
    m.add_argument("--device", help="sounddevice input device name or index")
    m.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for results after input ends")
    m.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                   help="session option for HELLO, e.g. --option 'vad={\"min_silence_ms\":400}'")
    m.set_defaults(func=cmd_mic)

    from voice.gateways.sip.command import add_parser as add_sip_parser

    add_sip_parser(sub)

    from voice.chat import add_parser as add_chat_parser

    add_chat_parser(sub)

    from voice.loadtest import add_parser as add_loadtest_parser

    add_loadtest_parser(sub)

    from voice.eval.command import add_parser as add_eval_parser

    add_eval_parser(sub)

    md = sub.add_parser("models", help="list, check, locate or prepare the packaged models")
    md.add_argument("action", choices=["list", "check", "path", "prepare"])
    md.add_argument("name", nargs="?")
    md.set_defaults(func=cmd_models)
    return p


def cmd_serve(args: argparse.Namespace) -> int:
    from voice.config import ConfigError, load_settings
    from voice.models import ModelCorrupt, ModelMissing
    from voice.server.app import run_server

    overrides: dict[str, Any] = {"server": {}, "asr": {}}
    for key in ("host", "port", "token"):
        if getattr(args, key) is not None:
            overrides["server"][key] = getattr(args, key)
    if args.asr_model:
        overrides["asr"]["model"] = args.asr_model
    if args.device:
        overrides["asr"]["device"] = args.device
    try:
        settings = load_settings(args.config, args.profile, overrides)
        if args.workers > 1 or args.port_per_worker:
            from voice.server.workers import run_workers

            return run_workers(settings, args.workers, args.port_per_worker, args.log_level)
        asyncio.run(run_server(settings))
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except (ModelMissing, ModelCorrupt) as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except OSError as e:
        print(f"error: cannot serve: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_mic(args: argparse.Namespace) -> int:
    from voice.mic import EXIT_USAGE, MicArgs, run_mic

    options: dict[str, Any] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: --option wants KEY=JSON, got {item!r}", file=sys.stderr)
            return EXIT_USAGE
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    mic_args = MicArgs(
        url=args.url, token=args.token, input=args.input, stdin_rate_hz=args.stdin_rate, rate_hz=args.rate,
        codec=args.codec, fast=args.fast, record=args.record, json_out=args.json, seconds=args.seconds,
        device=args.device, result_timeout_s=args.timeout, options=options, playback=not args.no_playback,
    )
    try:
        return asyncio.run(run_mic(mic_args))
    except KeyboardInterrupt:
        return 130


def cmd_models(args: argparse.Namespace) -> int:
    from voice import models

    if args.action == "path":
        if not args.name:
            print("usage: voice models path NAME", file=sys.stderr)
            return 2
        try:
            print(models.model_path(args.name))
        except (models.ModelMissing, models.ModelCorrupt) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    names = [args.name] if args.name else list(models.REGISTRY)
    if args.action == "prepare":
        results = models.prepare(names)
    else:
        results = [models.status(n, verify=args.action == "check") for n in names]
    bad = 0
    for st in results:
        spec = models.REGISTRY[st.name]
        print(f"{st.name:20} {spec.kind:4} {st.state:10} {st.path or '-'}  {st.detail}".rstrip())
        bad += st.state in ("missing", "corrupt")
    if args.action in ("list", "check") and not args.name:
        bad += print_token_tts_status()
    return 1 if bad and args.action == "check" else 0


def print_token_tts_status() -> int:
    """Rows for the token-based TTS (Orpheus/OuteTTS GGUF + SNAC/DAC codec) as configured."""
    from voice.config import load_settings
    from voice.tts.token_settings import token_tts_status

    token = load_settings().tts.token
    missing = 0
    for engine in ("orpheus", "outetts"):
        for name, state, path, detail in token_tts_status(token.model_copy(update={"engine": engine})):
            print(f"{name:20} tts  {state:10} {path or '-'}  {detail}".rstrip())
            missing += state == "missing"
    return missing


if __name__ == "__main__":
    sys.exit(main())
