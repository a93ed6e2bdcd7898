"""What the turn controller says, as OpenAI Realtime server events (the /v1/realtime door's output).

The controller speaks in turns and events (voice/pipeline/events.py); a Realtime client thinks in
conversation items and responses. `RealtimeWriter` keeps that mapping:
- the user's speech: speech_started/stopped carry the item id its transcript will have; a final
  becomes input_audio_buffer.committed, a user message item (added, transcription completed, done);
- a reply is a response: response.created on its first output, an assistant message item whose
  audio and transcript (or text) stream as deltas, function_call items for the client's tools, and
  response.done (completed, or cancelled when the controller cut it) with usage;
- a continued turn (the user went on): the earlier user item and the reply to it are deleted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

from voice.codecs.pcm import float32_to_int16
from voice.doors.realtime_wire import (
    ContentPart,
    ConversationItemAdded,
    ConversationItemDeleted,
    ConversationItemDone,
    FunctionCallItem,
    InputAudio,
    InputAudioBufferCommitted,
    InputAudioBufferSpeechStarted,
    InputAudioBufferSpeechStopped,
    InputAudioTranscriptionCompleted,
    InputAudioTranscriptionDelta,
    MessageItem,
    OutputAudio,
    OutputText,
    RateLimit,
    RateLimitsUpdated,
    Response,
    ResponseContentPartAdded,
    ResponseContentPartDone,
    ResponseCreated,
    ResponseDone,
    ResponseFunctionCallArgumentsDelta,
    ResponseFunctionCallArgumentsDone,
    ResponseOutputAudioDelta,
    ResponseOutputAudioDone,
    ResponseOutputAudioTranscriptDelta,
    ResponseOutputAudioTranscriptDone,
    ResponseOutputItemAdded,
    ResponseOutputItemDone,
    ResponseOutputTextDelta,
    ResponseOutputTextDone,
    ServerEvent,
    StatusDetails,
    TranscriptionDuration,
    Usage,
    encode_audio,
    new_id,
)
from voice.llm.client_agent import ClientAgent
from voice.pipeline.audio_out import OutFrame

Send = Callable[[ServerEvent], Awaitable[None]]
#: Rate limits are ours to report; a local server has none worth counting down.
RATE_LIMITS = [RateLimit(name="requests", limit=1_000_000, remaining=1_000_000, reset_seconds=0.0),
               RateLimit(name="tokens", limit=1_000_000, remaining=1_000_000, reset_seconds=0.0)]


@dataclasses.dataclass
class _Reply:
    """The response now being streamed."""

    response: Response
    item_id: str | None = None       # its assistant message item, once it has one
    text: str = ""
    audio: bool = True
    output: list[Any] = dataclasses.field(default_factory=list)


class RealtimeWriter:
    """Controller output -> Realtime server events; see the module docstring. One per connection."""

    def __init__(self, send: Send, door: Any):
        """`door`: the RealtimeDoor (its session's formats and modalities, its call's agent)."""
        self.send, self.door = send, door
        self.reply: _Reply | None = None
        self.utterance_items: dict[int, str] = {}   # utterance -> its future user item id
        self.stable_sent: dict[int, str] = {}        # utterance -> transcript already sent as deltas
        self.reply_items: dict[int, str] = {}        # reply turn -> its assistant item id
        self.last_item_id: str | None = None
        self.pending_user_texts: list[tuple[str, float]] = []  # (final, its speech s) not yet an item
        self.response_metadata: dict[str, str] | None = None
        self.input_committed: asyncio.Future[str] | None = None  # the door's commit waits for its item
        self.retracted_turn: int | None = None       # a reply taken back: the user went on
        self.requested = False                       # response.create sent to the call, no output yet

    async def write(self, item: Any) -> None:
        if isinstance(item, OutFrame):
            await self._audio(item)
            return
        handler = getattr(self, f"_on_{item.type}", None)
        if handler is not None:
            await handler(item)

    # ------------------------------------------------------------------ the user's speech

    def item_for(self, utterance: int) -> str:
        return self.utterance_items.setdefault(utterance, new_id("item"))

    async def _on_speech_started(self, e: Any) -> None:
        if self.door.server_vad:
            await self.send(InputAudioBufferSpeechStarted(audio_start_ms=round(e.at_ms),
                                                          item_id=self.item_for(e.utterance)))

    async def _on_speech_stopped(self, e: Any) -> None:
        if self.door.server_vad:
            await self.send(InputAudioBufferSpeechStopped(audio_end_ms=round(e.at_ms),
                                                          item_id=self.item_for(e.utterance)))

    async def _on_transcript_partial(self, e: Any) -> None:
        sent = self.stable_sent.get(e.utterance, "")
        if self.door.server_vad and e.stable_text.startswith(sent) and len(e.stable_text) > len(sent):
            self.stable_sent[e.utterance] = e.stable_text
            await self.send(InputAudioTranscriptionDelta(item_id=self.item_for(e.utterance),
                                                         delta=e.stable_text[len(sent):]))

    async def _on_transcript_final(self, e: Any) -> None:
        self.stable_sent.pop(e.utterance, None)
        if e.continues is not None:
            await self._forget_continued(e.continues)
        if not e.text.strip():
            self.utterance_items.pop(e.utterance, None)
            return
        if not self.door.server_vad:  # becomes an item at input_audio_buffer.commit
            self.pending_user_texts.append((e.text, (e.end_ms - e.start_ms) / 1000))
            return
        item_id = self.item_for(e.utterance)
        self.door.claim_user_item(item_id, e.text)
        await self.send(InputAudioBufferCommitted(item_id=item_id, previous_item_id=self.last_item_id))
        await self.user_item(item_id, e.text, (e.end_ms - e.start_ms) / 1000)

    async def user_item(self, item_id: str, text: str, audio_s: float) -> None:
        """A spoken user message item (`audio_s` seconds of speech): added, its transcript, done."""
        item = MessageItem(id=item_id, role="user", content=[InputAudio(transcript=None)], status="completed")
        await self.send(ConversationItemAdded(item=item, previous_item_id=self.last_item_id))
        await self.send(InputAudioTranscriptionCompleted(
            item_id=item_id, content_index=0, transcript=text,
            usage=TranscriptionDuration(seconds=round(max(0.0, audio_s), 3))))
        item = MessageItem(id=item_id, role="user", content=[InputAudio(transcript=text)], status="completed")
        await self.send(ConversationItemDone(item=item, previous_item_id=self.last_item_id))
        self.last_item_id = item_id

    async def placed(self, item: Any) -> None:
        """An item the client created: added and done, at the end of the conversation."""
        await self.send(ConversationItemAdded(item=item, previous_item_id=self.last_item_id))
        await self.send(ConversationItemDone(item=item, previous_item_id=self.last_item_id))
        self.last_item_id = item.id

    async def _on_input_committed(self, _: Any) -> None:
        """No server VAD: the client's commit makes one user item of what was said since."""
        pending, self.pending_user_texts = self.pending_user_texts, []
        text = " ".join(t for t, _ in pending).strip()
        item_id = new_id("item")
        await self.send(InputAudioBufferCommitted(item_id=item_id, previous_item_id=self.last_item_id))
        if text:
            self.door.add_user_text(text, item_id)
            await self.user_item(item_id, text, sum(s for _, s in pending))
        if self.input_committed is not None and not self.input_committed.done():
            self.input_committed.set_result(item_id)

    async def _forget_continued(self, utterance: int) -> None:
        """The user went on: their earlier item and the reply to it are gone from the conversation."""
        retracted = self.reply_items.pop(self.retracted_turn, None) if self.retracted_turn is not None else None
        self.retracted_turn = None
        for item_id in (self.utterance_items.pop(utterance, None), retracted):
            if item_id is not None:
                await self.send(ConversationItemDeleted(item_id=item_id))

    # ------------------------------------------------------------------ replies

    async def _begin(self) -> _Reply:
        if self.reply is None:
            audio = self.door.speaks_audio()
            response = Response(status="in_progress", conversation_id=self.door.conversation_id,
                                output_modalities=["audio" if audio else "text"], metadata=self.response_metadata)
            self.response_metadata = None
            self.reply = _Reply(response, audio=audio)
            await self.send(ResponseCreated(response=response))
        return self.reply

    async def _message(self) -> _Reply:
        """The reply's assistant message item, started on its first words or audio."""
        reply = await self._begin()
        if reply.item_id is None:
            reply.item_id = new_id("item")
            self.reply_items[self.door.call.speaker.turn] = reply.item_id
            if isinstance(self.door.call.speaker.agent, ClientAgent):
                self.door.call.speaker.agent.reply_item_id = reply.item_id
            item = MessageItem(id=reply.item_id, role="assistant", content=[], status="in_progress")
            index = len(reply.output)
            reply.output.append(item)
            await self.send(ResponseOutputItemAdded(response_id=reply.response.id, output_index=index, item=item))
            await self.send(ConversationItemAdded(item=item, previous_item_id=self.last_item_id))
            self.last_item_id = reply.item_id
            part = ContentPart(type="audio", transcript="") if reply.audio else ContentPart(type="text", text="")
            await self.send(ResponseContentPartAdded(response_id=reply.response.id, item_id=reply.item_id,
                                                     output_index=index, part=part))
        return reply

    async def _on_agent_text(self, e: Any) -> None:
        if e.final and not e.text and (self.reply is None or self.reply.item_id is None):
            return  # nothing said (a reply that was only a tool call): no empty message item
        reply = await self._message()
        if e.final:
            reply.text = e.text
            return
        index = len(reply.output) - 1
        delta = (ResponseOutputAudioTranscriptDelta if reply.audio else ResponseOutputTextDelta)(
            response_id=reply.response.id, item_id=reply.item_id, output_index=index, delta=e.text)
        await self.send(delta)

    async def _audio(self, frame: OutFrame) -> None:
        reply = await self._message()
        assert frame.pcm is not None
        data = encode_audio(float32_to_int16(frame.pcm), self.door.output_format())
        await self.send(ResponseOutputAudioDelta(response_id=reply.response.id, item_id=reply.item_id,
                                                 output_index=len(reply.output) - 1, delta=data))

    async def _on_tool_call(self, e: Any) -> None:
        if not isinstance(self.door.call.speaker.agent, ClientAgent):
            return  # the server's own tools: not the client's business
        reply = await self._begin()
        await self._close_message(reply, "completed")
        arguments = json.dumps(e.arguments, ensure_ascii=False)
        item_id = new_id("item")
        index = len(reply.output)
        item = FunctionCallItem(id=item_id, call_id=e.id, name=e.name, arguments="", status="in_progress")
        reply.output.append(item.model_copy(update={"arguments": arguments, "status": "completed"}))
        await self.send(ResponseOutputItemAdded(response_id=reply.response.id, output_index=index, item=item))
        await self.send(ConversationItemAdded(item=item, previous_item_id=self.last_item_id))
        common = {"response_id": reply.response.id, "item_id": item_id, "output_index": index, "call_id": e.id}
        await self.send(ResponseFunctionCallArgumentsDelta(**common, delta=arguments))
        await self.send(ResponseFunctionCallArgumentsDone(**common, name=e.name, arguments=arguments))
        await self.send(ResponseOutputItemDone(response_id=reply.response.id, output_index=index,
                                               item=reply.output[index]))
        await self.send(ConversationItemDone(item=reply.output[index], previous_item_id=self.last_item_id))
        self.last_item_id = item_id

    async def _on_reply_ended(self, e: Any) -> None:
        await self.finish("completed")

    async def _on_interrupted(self, e: Any) -> None:
        reason = "turn_detected" if e.reason in ("barge_in", "continuation") else "client_cancelled"
        if e.reason == "continuation":
            self.retracted_turn = e.turn
        if self.reply is not None:
            self.reply.text = e.heard_text
        await self.finish("cancelled", reason)

    async def finish(self, status: str, reason: str | None = None) -> None:
        """End the response now being streamed (nothing to do when there is none)."""
        reply, self.reply, self.requested = self.reply, None, False
        if reply is None:
            return
        await self._close_message(reply, "completed" if status == "completed" else "incomplete")
        response = reply.response.model_copy(update={
            "status": status, "output": reply.output, "usage": self._usage(reply),
            "status_details": StatusDetails(type=status, reason=reason) if status != "completed" else None})
        await self.send(ResponseDone(response=response))
        await self.send(RateLimitsUpdated(rate_limits=RATE_LIMITS))

    async def _close_message(self, reply: _Reply, status: str) -> None:
        if reply.item_id is None:
            return
        index = next(i for i, item in enumerate(reply.output) if item.id == reply.item_id)
        common = {"response_id": reply.response.id, "item_id": reply.item_id, "output_index": index}
        if reply.audio:
            await self.send(ResponseOutputAudioTranscriptDone(**common, transcript=reply.text))
            await self.send(ResponseOutputAudioDone(**common))
            part, content = ContentPart(type="audio", transcript=reply.text), OutputAudio(transcript=reply.text)
        else:
            await self.send(ResponseOutputTextDone(**common, text=reply.text))
            part, content = ContentPart(type="text", text=reply.text), OutputText(text=reply.text)
        await self.send(ResponseContentPartDone(**common, part=part))
        item = MessageItem(id=reply.item_id, role="assistant", content=[content], status=status)
        reply.output[index] = item
        await self.send(ResponseOutputItemDone(response_id=reply.response.id, output_index=index, item=item))
        await self.send(ConversationItemDone(item=item, previous_item_id=self.last_item_id))
        reply.item_id = None

    def _usage(self, reply: _Reply) -> Usage:
        count = self.door.call.speaker.agent.llm.count_tokens
        history = " ".join(str(m.get("content", "")) for m in self.door.call.speaker.agent.history)
        # the model's output: what it said and the arguments of the calls it made
        said = " ".join([reply.text, *(o.arguments for o in reply.output if isinstance(o, FunctionCallItem))]).strip()
        return Usage.of(input_text=count(history) if history else 0, input_audio=0,
                        output_text=count(said) if said else 0, output_audio=0)

    @property
    def active(self) -> bool:
        """A response is under way, or asked for and not yet begun (its first output may take a
        second; a second response.create in between must be refused too)."""
        return self.reply is not None or self.requested
