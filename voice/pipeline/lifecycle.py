"""The call around the turns: who speaks first, what a long silence leads to, and how the call ends.

One per call, owned by its TurnController (voice/pipeline/turns.py), which hands it the moments that
matter: the call begins, a reply was said to its end, the user spoke, a timer went off. It speaks
through the controller's reply speaker and ends the call by setting `ended` (the door then closes
the connection: BYE, a SIP BYE, the end of a Twilio stream).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from voice import metrics
from voice.pipeline.events import CallEnding

if TYPE_CHECKING:
    from voice.pipeline.turns import TurnController


class CallLifecycle:
    """See the module docstring. Use from the event loop (from the controller's handlers)."""

    def __init__(self, controller: TurnController) -> None:
        self.c = controller
        self.reprompts = 0
        self.ending: str | None = None      # the call ends when the words now being said are done
        self.end_reason: str | None = None
        self.ended = asyncio.Event()        # the call is over; the door closes

    def begin(self) -> None:
        """The call starts: a consent line and the greeting, if any; the maximum duration runs."""
        c = self.c
        call = c.options.call
        consent = c.recorder.settings.consent_line if c.recorder is not None else None
        if first := " ".join(line for line in (consent, call.greeting) if line):
            c.speaker.say(first)
        else:
            self.after_quiet()
        if call.max_call_s is not None:
            c.timers.arm("max_call", call.max_call_s)

    def user_spoke(self) -> None:
        self.reprompts = 0
        self.c.timers.disarm("silence")

    def reply_done(self) -> None:
        """A reply was said to its end: the call may be over (hang_up, an end state), or it waits."""
        c = self.c
        flow = c.speaker.agent.flow
        if self.ending is None and (c.hang_up.requested or (flow is not None and flow.state.end_call)):
            self.ending = "hang_up" if c.hang_up.requested else "goodbye"
        if self.ending is not None:
            self._finish(self.ending)
        else:
            self.after_quiet()

    def after_quiet(self) -> None:
        """The agent finished and nobody speaks: wait for the user, re-prompt if they stay silent."""
        after = self.c.options.call.reprompt_after_s
        if after is not None and not self.c.busy and self.ending is None:
            self.c.timers.arm("silence", after)

    def silence(self) -> None:
        """The user stayed silent: a re-prompt, or after enough of them a goodbye."""
        c = self.c
        if c.busy or self.ending is not None:
            return
        call = c.options.call
        if self.reprompts >= call.max_reprompts:
            self.say_goodbye(call.no_response_line, "no_response")
        else:
            self.reprompts += 1
            c.speaker.say(call.reprompt_line)

    def max_duration(self) -> None:
        if self.ending is None:
            self.say_goodbye(self.c.options.call.max_call_line, "max_duration")

    def say_goodbye(self, line: str, reason: str) -> None:
        """Whatever the agent was saying stops; it says `line`, then the call ends."""
        self.c.cancel_turn("call_end")
        self.ending = reason
        self.c.speaker.say(line)

    def _finish(self, reason: str) -> None:
        """Tell the client, let it play what it has, then end (the door closes the connection)."""
        c = self.c
        c.timers.disarm("silence")
        c.timers.disarm("max_call")
        c.outbox.put_nowait(CallEnding(reason=reason))
        self.end_reason = reason
        metrics.CALLS_ENDED.labels(reason).inc()
        asyncio.get_running_loop().call_later(c.options.call.end_grace_ms / 1000, self.ended.set)
