"""HTTP Digest authentication for SIP REGISTER (RFC 2617, RFC 7616 with MD5; RFC 3261 §22.4).

A registrar answers the first REGISTER with 401 (or a proxy with 407) and a challenge; the UA
repeats the request with credentials computed from the challenge's realm and nonce. Only MD5
(and MD5-sess) is implemented: it is what SIP registrars still ask for.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass


class DigestError(ValueError):
    """A challenge we cannot answer (not Digest, an unsupported algorithm or qop)."""


@dataclass(frozen=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


def parse_challenge(value: str) -> Challenge:
    """`Digest realm="x", nonce="y", qop="auth"` -> Challenge."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"not a Digest challenge: {scheme!r}")
    params = parse_params(rest)
    if "realm" not in params or "nonce" not in params:
        raise DigestError("challenge without realm or nonce")
    algorithm = params.get("algorithm", "MD5")
    if algorithm.upper() not in ("MD5", "MD5-SESS"):
        raise DigestError(f"unsupported digest algorithm {algorithm!r}")
    qop = tuple(q.strip() for q in params.get("qop", "").split(",") if q.strip())
    if qop and "auth" not in qop:
        raise DigestError(f"unsupported qop {params['qop']!r}")
    return Challenge(params["realm"], params["nonce"], algorithm, qop, params.get("opaque"),
                     params.get("stale", "").lower() == "true")


def parse_params(text: str) -> dict[str, str]:
    """Comma-separated `key=value` / `key="quoted, value"` pairs (keys lower-cased)."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " ,\t":
            i += 1
        eq = text.find("=", i)
        if eq < 0:
            break
        key = text[i:eq].strip().lower()
        i = eq + 1
        if i < n and text[i] == '"':
            end = i + 1
            while end < n and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            params[key] = text[i + 1:end].replace('\\"', '"')
            i = end + 1
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            params[key] = text[i:end].strip()
            i = end
    return params


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def digest_response(challenge: Challenge, *, username: str, password: str, method: str, uri: str,
                    nc: int = 1, cnonce: str | None = None) -> tuple[str, str | None]:
    """(response hash, cnonce used or None) per RFC 2617 §3.2.2.1."""
    ha1 = _md5(f"{username}:{challenge.realm}:{password}")
    if "auth" in challenge.qop or challenge.algorithm.upper() == "MD5-SESS":
        cnonce = cnonce or secrets.token_hex(8)
    if challenge.algorithm.upper() == "MD5-SESS":
        ha1 = _md5(f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = _md5(f"{method}:{uri}")
    if "auth" in challenge.qop:
        return _md5(f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:auth:{ha2}"), cnonce
    return _md5(f"{ha1}:{challenge.nonce}:{ha2}"), cnonce


def authorization(challenge: Challenge, *, username: str, password: str, method: str, uri: str,
                  nc: int = 1, cnonce: str | None = None) -> str:
    """The Authorization / Proxy-Authorization header value answering `challenge`."""
    response, cnonce = digest_response(challenge, username=username, password=password, method=method, uri=uri,
                                       nc=nc, cnonce=cnonce)
    parts = [f'username="{username}"', f'realm="{challenge.realm}"', f'nonce="{challenge.nonce}"', f'uri="{uri}"',
             f'response="{response}"', f"algorithm={challenge.algorithm}"]
    if "auth" in challenge.qop:
        parts += ["qop=auth", f"nc={nc:08x}", f'cnonce="{cnonce}"']
    if challenge.opaque is not None:
        parts.append(f'opaque="{challenge.opaque}"')
    return "Digest " + ", ".join(parts)
