"""Browser-style authentication at the gateway: minted JWTs in the three places a client can put them,
and every kind of bad token refused with its own reason."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from asgiref.sync import sync_to_async
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.test_gateway_support import (
    ScriptedUpstream,
    bearer,
    connect,
    expect_refusal,
    make_custom_deployment,
    recv_json,
    session_url,
)

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _mint(key_pk, **kwargs) -> str:
    from realtime.gateway.tokens import token_mint

    return token_mint(api_key_pk=str(key_pk), **kwargs)[0]


mint = sync_to_async(_mint)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signer_private_key():
    from realtime.agents.services import signing_key_current
    from realtime.lib.crypto import secret_decrypt

    signer = signing_key_current()
    return signer, serialization.load_pem_private_key(secret_decrypt(signer.private_key_encrypted).encode(), None)


def _forgeries(token: str) -> dict[str, str]:
    """Tokens derived from a genuine one, each wrong in one way, keyed by the reason expected."""
    signer, private = _signer_private_key()
    claims = jwt.decode(token, options={"verify_signature": False})
    header = {"kid": signer.kid, "typ": "JWT"}
    now = int(time.time())
    other_key = Ed25519PrivateKey.generate()
    unsigned_none = _b64(json.dumps({"alg": "none", "kid": signer.kid}).encode()) + "." + _b64(json.dumps(claims).encode())
    hs_header = _b64(json.dumps({"alg": "HS256", "kid": signer.kid, "typ": "JWT"}).encode())
    hs_body = hs_header + "." + _b64(json.dumps(claims).encode())
    hs_signature = hmac.new(signer.public_key_pem.encode(), hs_body.encode(), hashlib.sha256).digest()
    return {
        "token_expired": jwt.encode({**claims, "iat": now - 900, "nbf": now - 900, "exp": now - 600}, private,
                                    algorithm="EdDSA", headers=header),
        "token_bad_signature": jwt.encode(claims, other_key, algorithm="EdDSA", headers=header),
        "token_bad_algorithm": unsigned_none + ".",
        "token_bad_algorithm/hs256": hs_body + "." + _b64(hs_signature),
        "token_wrong_audience": jwt.encode({**claims, "aud": "someone-else"}, private, algorithm="EdDSA",
                                           headers=header),
    }


async def test_a_token_works_as_subprotocol_query_parameter_and_header(server_factory, project, dev_key):
    row, _ = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory()
        token = await mint(row.pk)
        async with await connect(session_url(server, "jwt-sp"), subprotocols=["realtime", f"switchboard-jwt.{token}"]) as ws:
            assert (await recv_json(ws))["type"] == "session.created"
            # The token is never echoed back: the dialect's subprotocol is chosen.
            assert ws.subprotocol == "realtime"
            assert token not in str(ws.response.headers)
        async with await connect(session_url(server, "jwt-q", token=token)) as ws:
            assert (await recv_json(ws))["type"] == "session.created"
        async with await connect(session_url(server, "jwt-h"), bearer(token)) as ws:
            assert (await recv_json(ws))["type"] == "session.created"
        # Only the token entry offered: accepted with no subprotocol at all.
        async with await connect(session_url(server, "jwt-sp2"), subprotocols=[f"switchboard-jwt.{token}"]) as ws:
            assert (await recv_json(ws))["type"] == "session.created"
            assert ws.subprotocol is None
    assert token not in server.log()


async def test_bad_tokens_are_refused_each_with_its_reason(server_factory, project, dev_key):
    row, _ = dev_key
    server = server_factory()
    token = await mint(row.pk)
    forgeries = await sync_to_async(_forgeries)(token)
    seen = {}
    for expected, forged in forgeries.items():
        async with await connect(session_url(server, "forged"), bearer(forged)) as ws:
            error, code = await expect_refusal(ws)
        seen[expected] = (error["code"], code)
    assert seen == {expected: (expected.split("/")[0], 4401) for expected in forgeries}


async def test_a_single_use_token_works_once(server_factory, project, dev_key):
    row, _ = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory()
        token = await mint(row.pk, single_use=True)
        async with await connect(session_url(server, "once-1", token=token)) as ws:
            assert (await recv_json(ws))["type"] == "session.created"
        async with await connect(session_url(server, "once-2", token=token)) as ws:
            error, code = await expect_refusal(ws)
        assert (error["code"], code) == ("token_replayed", 4401)


async def test_a_token_of_a_revoked_key_is_refused(server_factory, project, dev_key):
    from accounts.services import api_key_revoke

    row, _ = dev_key
    server = server_factory()
    token = await mint(row.pk)
    await sync_to_async(api_key_revoke)(api_key=row)
    async with await connect(session_url(server, "revoked-jwt"), bearer(token)) as ws:
        error, code = await expect_refusal(ws)
    assert (error["code"], code) == ("token_key_revoked", 4401)


async def test_a_token_pinned_to_a_deployment_cannot_choose_another(server_factory, project, dev_key):
    row, _ = dev_key
    async with ScriptedUpstream() as upstream:
        pinned = await make_custom_deployment(project, upstream.url, default=False, name="Pinned")
        other = await make_custom_deployment(project, upstream.url, default=False, name="Other")
        server = server_factory()
        token = await mint(row.pk, deployment_key=pinned.deployment_key)
        url = f"{server.ws_url}/v1/realtime?deployment={other.deployment_key}"
        async with await connect(url, bearer(token)) as ws:
            error, code = await expect_refusal(ws)
        assert (error["code"], code) == ("deployment_forbidden", 4403)
        # Without naming one it reaches the pinned deployment (not the environment's default).
        async with await connect(f"{server.ws_url}/v1/realtime", bearer(token)) as ws:
            assert (await recv_json(ws))["type"] == "session.created"
            up = await upstream.next_connection()
            assert up.headers["Authorization"] == "Bearer upstream-secret-123"
