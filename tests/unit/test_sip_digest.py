"""Digest authentication for REGISTER (RFC 2617 / RFC 7616, MD5)."""

from __future__ import annotations

import pytest

from voice.gateways.sip.digest import DigestError, authorization, digest_response, parse_challenge, parse_params

RFC2617_CHALLENGE = ('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                     'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')


def test_rfc_2617_example_response():
    challenge = parse_challenge(RFC2617_CHALLENGE)
    response, _ = digest_response(challenge, username="Mufasa", password="Circle Of Life", method="GET",
                                  uri="/dir/index.html", nc=1, cnonce="0a4f113b")
    assert response == "6629fae49393a05397450978507c4ef1"


def test_authorization_header_carries_qop_nc_cnonce_and_opaque():
    header = authorization(parse_challenge(RFC2617_CHALLENGE), username="Mufasa", password="Circle Of Life",
                           method="GET", uri="/dir/index.html", cnonce="0a4f113b")
    params = parse_params(header.removeprefix("Digest "))
    assert params["response"] == "6629fae49393a05397450978507c4ef1"
    assert (params["qop"], params["nc"], params["opaque"]) == ("auth", "00000001", "5ccc069c403ebaf9f0171e9517f40e41")


def test_challenge_without_qop_uses_the_rfc_2069_form():
    challenge = parse_challenge('Digest realm="r", nonce="n"')
    response, cnonce = digest_response(challenge, username="u", password="p", method="REGISTER", uri="sip:h")
    import hashlib

    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    assert cnonce is None and response == md5(f"{md5('u:r:p')}:n:{md5('REGISTER:sip:h')}")


@pytest.mark.parametrize("value", ['Basic realm="x"', 'Digest realm="x"',
                                   'Digest realm="x", nonce="n", algorithm=SHA-256',
                                   'Digest realm="x", nonce="n", qop="auth-int"'])
def test_unanswerable_challenges_raise(value):
    with pytest.raises(DigestError):
        parse_challenge(value)


def test_quoted_params_may_contain_commas():
    assert parse_params('realm="a, b", nonce=xyz')["realm"] == "a, b"
