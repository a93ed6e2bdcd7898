"""The OpenAI Realtime API's door (/v1/realtime): any Realtime client runs on our models.

The connection carries JSON events (voice/doors/realtime_wire: the one parser and encoder). This
door maps the client's events to the call's turn controller and its output back
(voice/doors/realtime_out.py), in process, like the other doors:
- audio in (`input_audio_buffer.append`, PCM 24 kHz or G.711) goes to our ears; turn detection
  `semantic_vad` is our end-of-turn detector at its eagerness, `server_vad` a fixed silence of
  `silence_duration_ms`, null: the client commits (`input_audio_buffer.commit`) and asks for answers;
- the agent: the server's (`realtime.agent`) until the client gives instructions or tools; then a
  ClientAgent (voice/llm/client_agent.py) whose tools the client runs: the model's call is a
  function_call item, the client sends `function_call_output` and `response.create`;
- barge-in is ours (the response is cancelled: `turn_detected`); `conversation.item.truncate` cuts
  the assistant item to what the client played, as our playback marks do.
Auth: `Authorization: Bearer <server token>`, or the browser's WebSocket subprotocol
`openai-insecure-api-key.<token>`. Every refused client event gets an `error` event naming its
`event_id`; the session goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voice.config import Settings
from voice.doors.base import CallDoor
from voice.doors.protocol import bearer_token, token_ok
from voice.doors.realtime_out import RealtimeWriter
from voice.doors.realtime_wire import (
    AudioFormat,
    ConversationItemCreate,
    ConversationItemDelete,
    ConversationItemDeleted,
    ConversationItemRetrieve,
    ConversationItemRetrieved,
    ConversationItemTruncate,
    ConversationItemTruncated,
    FunctionCallOutputItem,
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferCleared,
    InputAudioBufferCommit,
    MessageItem,
    OutputAudioBufferClear,
    PcmFormat,
    RealtimeWireError,
    ResponseCancel,
    ResponseCreate,
    SemanticVad,
    ServerEvent,
    ServerVad,
    Session,
    SessionCreated,
    SessionUpdate,
    SessionUpdated,
    apply_session_update,
    decode_audio,
    encode,
    error_event,
    new_id,
    parse_client_event,
    rate_hz,
    wire_error_event,
)
from voice.llm.client_agent import ClientAgent
from voice.pipeline.audio_in import AudioInput
from voice.pipeline.call import open_call
from voice.pipeline.engines import Engines
from voice.pipeline.events import OptionsChanged, RespondRequest, StopRequest, TruncateReply
from voice.pipeline.options import OptionsError, resolve_options

log = logging.getLogger(__name__)

REALTIME_PATH = "/v1/realtime"
SUBPROTOCOL_KEY = "openai-insecure-api-key."
POLICY_VIOLATION = 1008
#: How long a commit waits for the controller to turn what was said into a user item (it is queued
#: behind the commit's finals: milliseconds, unless the call is stuck).
COMMIT_WAIT_S = 5.0
#: What a Realtime session is, here, before the client changes it: our end-of-turn detector.
DEFAULT_TURN_DETECTION = SemanticVad()


class RealtimeDoor(CallDoor):
    """One Realtime connection = one session = one call; see the module docstring."""

    def __init__(self, conn: ServerConnection, settings: Settings, engines: Engines):
        super().__init__()
        self.conn, self.settings, self.engines = conn, settings, engines
        query = parse_qs(urlsplit(conn.request.path if conn.request else "").query)
        model = (query.get("model") or [settings.llm.model])[0][:128]
        self.session = Session(id=new_id("sess"), object="realtime.session", model=model)
        self.session = self.session.model_copy(update={"audio": self.session.audio.model_copy(update={
            "input": self.session.audio.input.model_copy(update={"turn_detection": DEFAULT_TURN_DETECTION})})})
        self.conversation_id = new_id("conv")
        self.writer = RealtimeWriter(self._send, self)
        self.audio_in = AudioInput("pcm16", rate_hz(PcmFormat()))
        self._appended_ms = 0.0  # input since the last commit (no server VAD)
        self.pending_texts: list[str] = []  # user items the server's agent has not answered yet

    # ------------------------------------------------------------------ the connection

    async def run(self) -> None:
        if not self._authorized():
            await self._send(error_event("invalid_api_key", "missing or wrong API key (the server's token)",
                                         kind="invalid_request_error"))
            await self._close(POLICY_VIOLATION, "unauthorized")
            return
        try:
            options = resolve_options(self._options(self.session), self.settings)
        except OptionsError as e:  # the server's own defaults do not validate: a config bug
            await self._send(error_event("server_error", str(e), kind="server_error"))
            await self._close(1011, "server configuration")
            return
        self.call = await open_call(self.settings, self.engines, options, session_id=self.id,
                                    output_codec="pcm16", output_rate_hz=rate_hz(self.output_format()))
        await self._send(SessionCreated(session=self.session))
        log.info("realtime session started", extra={"session": self.id, "model": self.session.model})
        outcome = await self.serve_call()
        if outcome != "ended":
            await self._close(1000, "session ended")

    def _authorized(self) -> bool:
        headers = self.conn.request.headers if self.conn.request else {}
        offered = [p.strip() for p in (headers.get("Sec-WebSocket-Protocol") or "").split(",")]
        keys = [p[len(SUBPROTOCOL_KEY):] for p in offered if p.startswith(SUBPROTOCOL_KEY)]
        given = bearer_token(headers.get("Authorization")) or (keys[0] if keys else "")
        return token_ok(self.settings.server.token, given)

    async def read_loop(self) -> str:
        try:
            limit = self.settings.realtime.max_append_bytes
            async for raw in self.conn:
                try:
                    await self._on_event(parse_client_event(raw, max_audio_bytes=limit))
                except RealtimeWireError as e:
                    await self._send(wire_error_event(e))
        except ConnectionClosed:
            pass
        return "vanished"

    async def write(self, item: Any) -> None:
        await self.writer.write(item)

    async def close_call(self) -> None:
        await self._close(1000, "call ended")

    async def going_away(self) -> None:
        await self._close(1001, "server shutting down")

    async def _send(self, event: ServerEvent) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.conn.send(encode(event))

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.conn.close(code, reason)

    # ------------------------------------------------------------------ client events

    async def _on_event(self, event: Any) -> None:
        handler = _HANDLERS[type(event)]
        await handler(self, event)

    async def _session_update(self, e: SessionUpdate) -> None:
        updated = apply_session_update(self.session, e.session)
        updated = updated.model_copy(update={"id": self.session.id, "object": "realtime.session"})
        assert self.call is not None
        if updated.audio.output.format != self.session.audio.output.format and self.call.busy:
            raise RealtimeWireError("invalid_value", "the output format cannot change while a response is "
                                    "playing", e.event_id, "session.audio.output.format")
        try:
            options = resolve_options(self._options(updated), self.settings, self.call.options)
        except OptionsError as err:
            raise RealtimeWireError("invalid_value", str(err), e.event_id, "session") from None
        self._use_agent(updated, e.event_id)
        if updated.audio.output.format != self.session.audio.output.format:
            self.call.speaker.set_output("pcm16", rate_hz(updated.audio.output.format))
        if updated.audio.input.format != self.session.audio.input.format:
            self.audio_in = AudioInput("pcm16", rate_hz(updated.audio.input.format))
        self.session = updated
        self.call.submit(OptionsChanged(options))
        await self._send(SessionUpdated(session=self.session))

    def _use_agent(self, session: Session, event_id: str | None) -> None:
        """The client's instructions and tools make the agent the client's (see module doc)."""
        assert self.call is not None
        tools = [t.model_dump(exclude_none=True) for t in session.tools]
        agent = self.call.speaker.agent
        if isinstance(agent, ClientAgent):
            agent.instructions, agent.tools = session.instructions, tools
        elif session.instructions or tools:
            client = ClientAgent(agent.llm, self.settings.llm.generation_options(), instructions=session.instructions,
                                 tools=tools, new_id=new_id, history=[dict(m) for m in agent.history])
            if not self.call.replace_agent(client):
                raise RealtimeWireError("invalid_value", "instructions and tools can be set while no turn is in "
                                        "flight", event_id, "session.instructions")

    def _options(self, session: Session) -> dict[str, Any]:
        """Our per-session options for a Realtime session's settings."""
        detection = session.audio.input.turn_detection
        call = {"greeting": "", "reprompt_after_s": None, "hang_up_tool": False,
                "answer_turns": bool(detection and detection.create_response)}
        barge_in = {"enabled": bool(detection and detection.interrupt_response)}
        if isinstance(detection, ServerVad):
            turn = {"mode": "silence", "max_silence_ms": max(100, detection.silence_duration_ms)}
            return {"agent": self.settings.realtime.agent, "call": call, "barge_in": barge_in, "turn": turn,
                    "vad": {"threshold": min(max(detection.threshold, 0.05), 0.95)}}
        turn = {"mode": "smart", "eagerness": detection.eagerness} if detection else {"mode": "silence"}
        return {"agent": self.settings.realtime.agent, "call": call, "barge_in": barge_in, "turn": turn}

    @property
    def server_vad(self) -> bool:
        """The server finds the user's turns (else the client commits them)."""
        return self.session.audio.input.turn_detection is not None

    def output_format(self) -> AudioFormat:
        return self.session.audio.output.format

    def speaks_audio(self) -> bool:
        return self.call is not None and self.call.speaker.audio

    async def _append(self, e: InputAudioBufferAppend) -> None:
        assert self.call is not None
        fmt = self.session.audio.input.format
        pcm = decode_audio(e.audio, fmt, e.event_id)
        self._appended_ms += len(pcm) * 1000 / rate_hz(fmt)
        samples = self.audio_in.decode(pcm.astype("<i2").tobytes())
        if len(samples):
            await self.call.feed_audio(samples)

    async def _commit(self, e: InputAudioBufferCommit) -> None:
        assert self.call is not None
        if self._appended_ms < 100:
            raise RealtimeWireError("input_audio_buffer_commit_empty", f"buffer too small: {self._appended_ms:.0f} "
                                    "ms of audio since the last commit; 100 ms at least", e.event_id)
        self._appended_ms = 0.0
        if self.server_vad:
            return  # the server commits turns itself; this one is already on its way
        # the next client event (response.create, right behind the commit) must see the user item
        committed = self.writer.input_committed = asyncio.get_running_loop().create_future()
        await self.call.commit_input()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(COMMIT_WAIT_S):
                await committed

    async def _clear(self, e: InputAudioBufferClear) -> None:
        assert self.call is not None
        await self.call.listener.flush()
        self.writer.pending_user_texts.clear()
        self._appended_ms = 0.0
        await self._send(InputAudioBufferCleared())

    async def _item_create(self, e: ConversationItemCreate) -> None:
        assert self.call is not None
        item = e.item
        if isinstance(item, FunctionCallOutputItem):
            agent = self.call.speaker.agent
            client = isinstance(agent, ClientAgent)
            added = agent.add_tool_output(item.call_id, item.output, item.id) if client else None
            if added is None:
                raise RealtimeWireError("invalid_value", f"no function call with call_id {item.call_id!r}",
                                        e.event_id, "item.call_id")
            await self.writer.placed(item.model_copy(update={"id": added}))
            return
        if not isinstance(item, MessageItem):
            raise RealtimeWireError("invalid_value", "only message and function_call_output items can be created",
                                    e.event_id, "item.type")
        text = " ".join(getattr(part, "text", None) or getattr(part, "transcript", None) or ""
                        for part in item.content).strip()
        if not text:
            raise RealtimeWireError("invalid_value", "the item has no text (audio content needs its transcript)",
                                    e.event_id, "item.content")
        item_id = item.id or new_id("item")
        if item.role == "user":
            self.add_user_text(text, item_id)
        elif isinstance(self.call.speaker.agent, ClientAgent):
            self.call.speaker.agent.add(item.role, text, item_id)
        else:
            raise RealtimeWireError("invalid_value", f"{item.role} items need the client's own agent (set "
                                    "instructions or tools in session.update)", e.event_id, "item.role")
        await self.writer.placed(item.model_copy(update={"id": item_id, "status": "completed"}))

    def add_user_text(self, text: str, item_id: str) -> None:
        """A user turn that is not answered yet (the client asks with response.create)."""
        assert self.call is not None
        agent = self.call.speaker.agent
        if isinstance(agent, ClientAgent):
            agent.add("user", text, item_id)
        else:
            self.pending_texts.append(text)

    def claim_user_item(self, item_id: str, text: str) -> None:
        """The agent heard `text` (an answered turn): its history entry takes the client's item id."""
        assert self.call is not None
        agent = self.call.speaker.agent
        if not isinstance(agent, ClientAgent):
            return
        for message in reversed(agent.history):
            if message["role"] == "user" and message["content"] == text:
                message["id"] = item_id
                return
        if not self.call.options.call.answer_turns:
            agent.add("user", text, item_id)

    async def _item_retrieve(self, e: ConversationItemRetrieve) -> None:
        assert self.call is not None
        found = self._find(e.item_id, e.event_id)
        role = found["role"] if found["role"] in ("user", "assistant", "system") else "assistant"
        part = {"user": {"type": "input_text", "text": found["content"]},
                "system": {"type": "input_text", "text": found["content"]}}.get(
            role, {"type": "output_text", "text": found["content"]})
        item = MessageItem.model_validate({"id": e.item_id, "role": role, "content": [part]})
        await self._send(ConversationItemRetrieved(item=item))

    async def _item_truncate(self, e: ConversationItemTruncate) -> None:
        assert self.call is not None
        if e.item_id not in self.writer.reply_items.values():
            raise RealtimeWireError("invalid_value", f"no assistant audio item {e.item_id!r}", e.event_id, "item_id")
        if e.item_id != next(reversed(self.writer.reply_items.values())):
            # the cut lands on the speaker's latest reply: an older item's would cut the wrong one
            raise RealtimeWireError("invalid_value", f"item {e.item_id!r} is not the latest reply; only that one's "
                                    "audio can be truncated", e.event_id, "item_id")
        self.call.submit(TruncateReply(float(e.audio_end_ms)))
        await self._send(ConversationItemTruncated(item_id=e.item_id, content_index=e.content_index,
                                                   audio_end_ms=e.audio_end_ms))

    async def _item_delete(self, e: ConversationItemDelete) -> None:
        assert self.call is not None
        agent = self.call.speaker.agent
        if not isinstance(agent, ClientAgent) or not agent.delete(e.item_id):
            raise RealtimeWireError("invalid_value", f"no item {e.item_id!r} (items can be deleted from the "
                                    "client's own agent's conversation)", e.event_id, "item_id")
        await self._send(ConversationItemDeleted(item_id=e.item_id))

    def _find(self, item_id: str, event_id: str | None) -> dict[str, Any]:
        agent = self.call.speaker.agent if self.call else None
        found = agent.find(item_id) if isinstance(agent, ClientAgent) else None
        if found is None:
            raise RealtimeWireError("invalid_value", f"no item {item_id!r}", event_id, "item_id")
        return found

    async def _response_create(self, e: ResponseCreate) -> None:
        assert self.call is not None
        params = e.response
        if self.writer.active or self.call.speaker.speaking:
            raise RealtimeWireError("conversation_already_has_active_response", "a response is in progress; "
                                    "cancel it or wait for response.done", e.event_id)
        if params.conversation == "none":
            raise RealtimeWireError("invalid_value", "out-of-band responses (conversation: none) are not "
                                    "supported", e.event_id, "response.conversation")
        agent = self.call.speaker.agent
        text = None
        if isinstance(agent, ClientAgent):
            tools = None if params.tools is None else [t.model_dump(exclude_none=True) for t in params.tools]
            agent.response_overrides = (params.instructions, tools)
        elif self.pending_texts:
            text, self.pending_texts = " ".join(self.pending_texts), []
        elif params.instructions or params.tools:
            raise RealtimeWireError("invalid_value", "set instructions or tools in session.update to use them "
                                    "(this session runs the server's agent)", e.event_id, "response.instructions")
        else:
            raise RealtimeWireError("invalid_value", "nothing new to answer: add a user item first", e.event_id)
        modalities = params.output_modalities or self.session.output_modalities
        self.writer.response_metadata = params.metadata
        self.writer.requested = True  # every RespondRequest ends in ReplyEnded, which clears it
        self.call.submit(RespondRequest(text=text, audio=modalities == ["audio"]))

    async def _response_cancel(self, e: ResponseCancel | OutputAudioBufferClear) -> None:
        assert self.call is not None
        if not (self.writer.active or self.call.speaker.speaking):
            raise RealtimeWireError("response_cancel_not_active", "there is no response in progress", e.event_id)
        self.call.submit(StopRequest("client"))

_HANDLERS = {
    SessionUpdate: RealtimeDoor._session_update, InputAudioBufferAppend: RealtimeDoor._append,
    InputAudioBufferCommit: RealtimeDoor._commit, InputAudioBufferClear: RealtimeDoor._clear,
    ConversationItemCreate: RealtimeDoor._item_create, ConversationItemRetrieve: RealtimeDoor._item_retrieve,
    ConversationItemTruncate: RealtimeDoor._item_truncate, ConversationItemDelete: RealtimeDoor._item_delete,
    ResponseCreate: RealtimeDoor._response_create, ResponseCancel: RealtimeDoor._response_cancel,
    OutputAudioBufferClear: RealtimeDoor._response_cancel,
}
