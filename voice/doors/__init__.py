"""The server's doors: one thin adapter per wire, each ending in the same per-session turn controller.

- protocol.py: our binary protocol over WebSocket (/ws): browser, CLI, SIP gateway;
- twilio.py: Twilio Media Streams (/twilio): JSON, base64 μ-law 8 kHz;
- realtime.py: the OpenAI Realtime API (/v1/realtime).
A door maps its wire messages to the controller's typed input events (voice/pipeline/events.py) and
the controller's output events back to its wire; it is the only place that knows that wire.
"""
