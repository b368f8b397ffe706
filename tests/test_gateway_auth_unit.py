"""Connection authentication pieces that need no server: origins and where credentials are found."""
from __future__ import annotations

import pytest
from django.test import override_settings

from realtime.gateway.auth import AuthFailed, accepted_subprotocol, connection_authenticate, origin_check

pytestmark = pytest.mark.unit


def scope(headers=(), subprotocols=(), query=b""):
    return {"headers": [(k.encode(), v.encode()) for k, v in headers], "subprotocols": list(subprotocols),
            "query_string": query}


@override_settings(REALTIME_ALLOWED_ORIGINS=["http://127.0.0.1:8000/"])
def test_origins_compare_scheme_host_and_port_only():
    origin_check(scope([("origin", "HTTP://127.0.0.1:8000")]))
    origin_check(scope())  # a server-side client sends none
    for bad in ("http://127.0.0.1:8001", "https://127.0.0.1:8000", "http://evil.example"):
        with pytest.raises(AuthFailed) as refused:
            origin_check(scope([("origin", bad)]))
        assert (refused.value.error.code, refused.value.error.close_code) == ("origin_not_allowed", 4403)


def test_the_token_subprotocol_is_never_the_one_accepted():
    assert accepted_subprotocol(scope(subprotocols=["switchboard-jwt.abc", "realtime"])) == "realtime"
    assert accepted_subprotocol(scope(subprotocols=["switchboard-jwt.abc"])) is None


@pytest.mark.django_db
async def test_credentials_are_required_and_must_be_well_formed():
    with pytest.raises(AuthFailed) as refused:
        await connection_authenticate(scope=scope())
    assert refused.value.error.code == "missing_credentials"
    with pytest.raises(AuthFailed) as refused:
        await connection_authenticate(scope=scope([("authorization", "Digest abc")]))
    assert refused.value.error.code == "malformed_credentials"
    with pytest.raises(AuthFailed) as refused:
        await connection_authenticate(scope=scope(query=b"token=not.a.jwt"))
    assert refused.value.error.code == "token_malformed"
