"""Telephony gateways: SIP/RTP phones (`sip/`) and Twilio Media Streams (`twilio.py`).

Both are clients of the voice server's binary protocol: a call becomes one session, so
everything the server does for the browser or the CLI (turn-taking, barge-in, marks) works on the
phone unchanged.
"""
