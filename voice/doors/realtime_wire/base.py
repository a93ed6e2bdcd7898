"""What every Realtime wire module shares: the strict base model, the error a refused client event
raises, OpenAI-style ids and base64 audio fields."""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo
from pydantic_core import PydanticCustomError

#: Decoded audio one `input_audio_buffer.append` may carry (the API documents 15 MiB).
MAX_APPEND_AUDIO_BYTES = 15 * 1024 * 1024
#: Longest item/response/call id accepted from a client.
MAX_ID_CHARS = 64
#: Longest tool list, content list and response input a client may send.
MAX_LIST = 128


class RealtimeWireError(ValueError):
    """A client event the server refuses; `code`/`message`/`param` go into its `error` event,
    `event_id` names the client event (None when it had none)."""

    def __init__(self, code: str, message: str, event_id: str | None = None, param: str | None = None):
        super().__init__(message)
        self.code, self.message, self.event_id, self.param = code, message, event_id, param


def new_id(prefix: str) -> str:
    """An id in OpenAI's style: "event_…", "item_…", "resp_…", "call_…", "sess_…"."""
    return f"{prefix}_{secrets.token_hex(10)}"


class Part(BaseModel):
    # strict: "24000" is not a rate, 1 is not true; unknown keys are a newer client's business
    model_config = ConfigDict(strict=True, extra="ignore")


def b64_bytes(value: Any, limit_bytes: int) -> Any:
    """Base64 text from a client -> bytes, refusing more than `limit_bytes` before decoding it."""
    if isinstance(value, bytes):
        return value  # built in Python
    if not isinstance(value, str):
        raise PydanticCustomError("base64_type", "expected base64-encoded audio bytes in a string")
    too_large = PydanticCustomError("too_large", "more than {limit} bytes of audio in one event",
                                    {"limit": limit_bytes})
    if len(value) > (limit_bytes + 2) // 3 * 4:
        raise too_large  # before decoding it
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        raise PydanticCustomError("base64", "expected base64-encoded audio bytes, got an invalid value") from None
    if len(data) > limit_bytes:
        raise too_large
    return data


def b64_text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def audio_limit(info: ValidationInfo) -> int:
    return (info.context or {}).get("max_audio_bytes", MAX_APPEND_AUDIO_BYTES)
