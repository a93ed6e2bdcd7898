"""`voice chat`: talk to any agent by typing, through the real server (CONTROL "text" turns).

Each line read from stdin is one user turn; a line "/dtmf 12#" sends keypad digits instead
(CONTROL "dtmf", as a phone gateway would). The tool waits until the agent's reply is over (its
final agent_text and the SEGMENT_END of its audio: sending the next line earlier would barge in)
before it reads the next line. Text turns produce the same events as spoken ones; the reply audio
still streams and is dropped unless --record. At the end of stdin it sends end_of_input, waits
for input_ended and says BYE. Exit codes as `voice mic` (voice/mic.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the client stack (numpy, Opus, websockets) loads only when `voice chat` runs
    import numpy as np

    from voice.client import VoiceClient

EXIT_OK, EXIT_CONNECT, EXIT_AUTH, EXIT_SESSION, EXIT_TIMEOUT = 0, 3, 4, 5, 7  # as voice/mic.py
OUTPUT_RATE_HZ = 16000  # pcm16 at 16 kHz: nothing to decode when the audio is ignored


@dataclass
class ChatArgs:
    url: str
    token: str | None
    agent: str | None
    json_out: bool
    record: Path | None
    turn_timeout_s: float
    options: dict[str, Any]


def add_parser(sub: Any) -> None:
    """Register `voice chat` on the CLI's subparsers."""
    c = sub.add_parser("chat", help="talk to an agent by typing (text turns through the real server)")
    c.add_argument("--agent", help="agent for this session, e.g. booking or assistant (default: server's)")
    c.add_argument("--url", default="ws://127.0.0.1:8765/ws")
    c.add_argument("--token", default=os.environ.get("VOICE_TOKEN"))
    c.add_argument("--json", action="store_true", help="print every event as one JSON object per line")
    c.add_argument("--record", type=Path, help="save the reply audio to this WAV (16 kHz)")
    c.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each reply")
    c.add_argument("--option", action="append", default=[], metavar="KEY=JSON", help="more HELLO options")
    c.set_defaults(func=cmd_chat)


def cmd_chat(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {}
    for item in args.option:
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    chat = ChatArgs(url=args.url, token=args.token, agent=args.agent, json_out=args.json, record=args.record,
                    turn_timeout_s=args.timeout, options=options)
    try:
        return asyncio.run(run_chat(chat))
    except KeyboardInterrupt:
        return 130


class Transcript:
    """What the user sees: every event as JSON, or "agent: ..." lines and tool/state notes."""

    def __init__(self, json_out: bool):
        self.json_out = json_out

    def show(self, event: Any) -> None:
        data = event.model_dump(exclude_none=True)
        if self.json_out:
            print(json.dumps(data, ensure_ascii=False), flush=True)
            return
        kind = data.get("type")
        if kind == "agent_text" and data["final"]:
            print(f"agent: {data['text']}", flush=True)
        elif kind == "tool_call":
            print(f"  [tool {data['name']}({json.dumps(data['arguments'], ensure_ascii=False)})]", flush=True)
        elif kind == "tool_result":
            print(f"  [{'ok' if data['ok'] else 'error'}: {json.dumps(data['result'], ensure_ascii=False)}]",
                  flush=True)
        elif kind == "state_changed":
            print(f"  [state {data['state']} {json.dumps(data['slots'], ensure_ascii=False)}]", flush=True)


async def run_chat(args: ChatArgs) -> int:
    import numpy as np
    import soundfile as sf

    from voice.client import ClientError, ClientOptions, VoiceClient
    from voice.protocol import ErrorCode

    options = dict(args.options)
    if args.agent:
        options["agent"] = args.agent
    client = VoiceClient(args.url, ClientOptions(input_codec="pcm16", input_rate_hz=16000, output_codec="pcm16",
                                                 output_rate_hz=OUTPUT_RATE_HZ, options=options, token=args.token))
    out = Transcript(args.json_out)
    try:
        await client.connect()
    except ClientError as e:
        print(f"error {ErrorCode(e.code).name if e.code in ErrorCode._value2member_map_ else e.code}: {e.message}",
              file=sys.stderr)
        return EXIT_AUTH if e.code == ErrorCode.AUTH_FAILED else EXIT_SESSION
    except (OSError, TimeoutError) as e:
        print(f"error: cannot connect to {args.url}: {e}", file=sys.stderr)
        return EXIT_CONNECT
    audio: list[np.ndarray] = []
    try:
        return await _converse(client, args, out, audio)
    except ClientError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_SESSION
    finally:
        if args.record:
            sf.write(str(args.record), np.concatenate(audio) if audio else np.zeros(0, np.int16), OUTPUT_RATE_HZ,
                     subtype="PCM_16")
        await client.close()


async def _converse(client: VoiceClient, args: ChatArgs, out: Transcript, audio: list[np.ndarray]) -> int:
    from voice.client import ReceivedAudio, ServerError
    from voice.protocol import Flags
    from voice.protocol import messages as msg

    replied = asyncio.Event()   # the reply's final text arrived
    spoken = asyncio.Event()    # its audio ended (or there was none)
    ended = asyncio.Event()
    failed: list[int] = []
    waiting = {"audio": False}

    async def receive() -> None:
        async for item in client.messages():
            if isinstance(item, ReceivedAudio):
                if args.record:
                    audio.append(item.samples)
                if item.flags & Flags.SEGMENT_START:
                    waiting["audio"] = True
                if item.flags & Flags.SEGMENT_END:
                    waiting["audio"] = False
                    spoken.set()
            elif isinstance(item, ServerError):
                print(f"error {item.code}: {item.message}", file=sys.stderr)
                failed.append(item.code)
                replied.set()
                spoken.set()
            else:
                out.show(item)
                if item.type == "agent_text" and item.final:
                    replied.set()
                    if not waiting["audio"] and not item.text:
                        spoken.set()
                elif item.type == "input_ended":
                    ended.set()
                    return

    receiver = asyncio.create_task(receive())
    try:
        while (line := await asyncio.to_thread(sys.stdin.readline)) and not receiver.done():
            text = line.strip()
            if not text:
                continue
            replied.clear()
            spoken.clear()
            if not args.json_out:
                print(f"you: {text}", flush=True)
            if text.startswith("/dtmf "):
                try:
                    control: Any = msg.Dtmf(digits=text[6:].strip())
                except ValueError:
                    print("error: /dtmf takes keypad digits 0-9 * # A-D", file=sys.stderr)
                    continue
                await client.send_control(control)
            else:
                await client.send_control(msg.TextInput(text=text))
            try:
                await asyncio.wait_for(asyncio.gather(replied.wait(), spoken.wait()), args.turn_timeout_s)
            except TimeoutError:
                print("error: timed out waiting for the reply", file=sys.stderr)
                return EXIT_TIMEOUT
        await client.send_control(msg.EndOfInput())
        await asyncio.wait_for(ended.wait(), args.turn_timeout_s)
    except TimeoutError:
        print("error: timed out waiting for input_ended", file=sys.stderr)
        return EXIT_TIMEOUT
    finally:
        receiver.cancel()
    return EXIT_SESSION if failed else EXIT_OK
