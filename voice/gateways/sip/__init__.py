"""SIP gateway: the UA (`ua`), messages (`message`), SDP offer/answer (`sdp`), RTP (`rtp`, `pacer`,
`jitter`), DTMF (`dtmf`), registration (`register`, `digest`), and per call the media (`call`)
and the voice-server session (`bridge`), tied together in `gateway`; `voice sip` is `command`.
"""
