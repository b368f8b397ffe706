"""JWT minting and verification: every acceptance and every rejection reason, against the real
database and cache (Redis when REDIS_URL is set)."""
import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.utils import timezone

from accounts.models import Deployment, EnvironmentKind
from accounts.services import api_key_revoke, api_key_rotate
from realtime.agents.services import signing_key_current
from realtime.gateway.tokens import (
    AUDIENCE,
    TokenRejected,
    public_key_cache,
    token_mint,
    token_verify,
    token_verify_async,
)
from realtime.lib.crypto import secret_decrypt

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _fresh_public_keys():
    public_key_cache.clear()
    yield
    public_key_cache.clear()


def _claims(api_key, **overrides):
    now = int(time.time())
    claims = {
        "iss": settings.SITE_URL, "aud": AUDIENCE, "sub": api_key.key_id, "key": str(api_key.pk),
        "project": api_key.project.slug, "project_id": api_key.project_id, "environment": api_key.environment.kind,
        "iat": now, "nbf": now, "exp": now + 300, "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign_with_real_key(claims) -> str:
    signer = signing_key_current()
    private = serialization.load_pem_private_key(secret_decrypt(signer.private_key_encrypted).encode(), password=None)
    return jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": signer.kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _reason(token: str) -> str:
    with pytest.raises(TokenRejected) as caught:
        token_verify(token=token)
    return caught.value.reason


def test_a_minted_token_verifies_with_every_claim(dev_key):
    row, _ = dev_key
    deployment = Deployment.objects.get(environment=row.environment, is_default=True)
    token, expires_at = token_mint(
        api_key_pk=str(row.pk), ttl_seconds=120, deployment_key=deployment.deployment_key,
        max_session_seconds=90, session={"voice": "alloy"},
    )
    claims = token_verify(token=token)
    assert claims.key_pk == str(row.pk)
    assert claims.key_id == row.key_id
    assert (claims.project_id, claims.project_slug) == (row.project_id, row.project.slug)
    assert (claims.environment, claims.environment_id) == (EnvironmentKind.DEVELOPMENT, row.environment_id)
    assert claims.deployment_key == deployment.deployment_key
    assert claims.max_session_seconds == 90
    assert claims.session == {"voice": "alloy"}
    assert claims.single_use is False
    assert claims.expires_at == expires_at
    assert timedelta(seconds=115) < expires_at - timezone.now() <= timedelta(seconds=120)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"] == signing_key_current().kid
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["sub"] == row.key_id and payload["aud"] == AUDIENCE and payload["iss"] == settings.SITE_URL
    assert payload["nbf"] == payload["iat"]


def test_a_reusable_token_verifies_twice(dev_key):
    token, _ = token_mint(api_key_pk=str(dev_key[0].pk))
    assert token_verify(token=token).jti == token_verify(token=token).jti


def test_default_ttl_is_five_minutes_and_the_cap_is_an_hour(dev_key):
    row, _ = dev_key
    _, default_expiry = token_mint(api_key_pk=str(row.pk))
    assert timedelta(seconds=295) < default_expiry - timezone.now() <= timedelta(seconds=300)
    _, capped_expiry = token_mint(api_key_pk=str(row.pk), ttl_seconds=86400)
    assert timedelta(seconds=3595) < capped_expiry - timezone.now() <= timedelta(seconds=3600)


@pytest.mark.parametrize("ttl", [0, -5])
def test_a_ttl_below_one_second_is_refused(dev_key, ttl):
    with pytest.raises(ValueError):
        token_mint(api_key_pk=str(dev_key[0].pk), ttl_seconds=ttl)


def test_a_deployment_of_another_environment_cannot_be_put_in_a_token(dev_key, project, other_project):
    row, _ = dev_key
    production = Deployment.objects.get(project=project, environment__kind=EnvironmentKind.PRODUCTION)
    foreign = Deployment.objects.filter(project=other_project).first()
    for deployment in (production, foreign):
        with pytest.raises(Deployment.DoesNotExist):
            token_mint(api_key_pk=str(row.pk), deployment_key=deployment.deployment_key)


def test_single_use_token_is_refused_the_second_time(dev_key):
    token, _ = token_mint(api_key_pk=str(dev_key[0].pk), single_use=True)
    assert token_verify(token=token).single_use is True
    assert _reason(token) == "token_replayed"


@pytest.mark.django_db(transaction=True)  # the thread doing the verification must see committed rows
async def test_async_verification_agrees_with_sync(dev_key):
    from asgiref.sync import sync_to_async

    token, _ = await sync_to_async(token_mint)(api_key_pk=str(dev_key[0].pk), single_use=True)
    claims = await token_verify_async(token=token)
    assert claims.key_pk == str(dev_key[0].pk)
    with pytest.raises(TokenRejected) as caught:
        await token_verify_async(token=token)
    assert caught.value.reason == "token_replayed"
    with pytest.raises(TokenRejected) as caught:
        await token_verify_async(token="not.a.jwt")
    assert caught.value.reason == "token_malformed"


def test_expired_token_is_refused(dev_key):
    row, _ = dev_key
    past = int(time.time()) - 600
    token = _sign_with_real_key(_claims(row, iat=past, nbf=past, exp=past + 300))
    assert _reason(token) == "token_expired"


def test_token_from_the_future_is_refused(dev_key):
    row, _ = dev_key
    future = int(time.time()) + 600
    assert _reason(_sign_with_real_key(_claims(row, nbf=future, exp=future + 300))) == "token_not_yet_valid"


def test_token_signed_by_another_ed25519_key_is_refused(dev_key):
    row, _ = dev_key
    forger = Ed25519PrivateKey.generate()
    token = jwt.encode(_claims(row), forger, algorithm="EdDSA", headers={"kid": signing_key_current().kid})
    assert _reason(token) == "token_bad_signature"


def test_token_with_an_unknown_kid_is_refused(dev_key):
    row, _ = dev_key
    forger = Ed25519PrivateKey.generate()
    token = jwt.encode(_claims(row), forger, algorithm="EdDSA", headers={"kid": "made-up"})
    assert _reason(token) == "token_bad_signature"


def test_alg_none_is_refused(dev_key):
    row, _ = dev_key
    token = jwt.encode(_claims(row), None, algorithm="none", headers={"kid": signing_key_current().kid})
    assert _reason(token) == "token_bad_algorithm"


def test_hs256_signed_with_the_public_key_is_refused(dev_key):
    """The classic key-confusion attack: a verifier that trusts the header would use the public key
    (which anyone can fetch from the JWKS) as an HMAC secret."""
    row, _ = dev_key
    signer = signing_key_current()
    header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(row)).encode())}"
    for secret in (signer.public_key_pem.encode(), base64.urlsafe_b64decode(_jwks_x(signer.kid) + "==")):
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert _reason(f"{signing_input}.{_b64(signature)}") == "token_bad_algorithm"


def _jwks_x(kid: str) -> str:
    from django.test import Client

    keys = Client().get("/.well-known/jwks.json").json()["keys"]
    return next(key["x"] for key in keys if key["kid"] == kid)


def test_wrong_audience_is_refused(dev_key):
    assert _reason(_sign_with_real_key(_claims(dev_key[0], aud="someone-else"))) == "token_wrong_audience"


def test_wrong_issuer_is_refused(dev_key):
    assert _reason(_sign_with_real_key(_claims(dev_key[0], iss="https://evil.example"))) == "token_wrong_issuer"


@pytest.mark.parametrize("claim", ["sub", "jti", "key", "project", "environment", "exp", "nbf", "iat"])
def test_a_missing_required_claim_is_refused(dev_key, claim):
    claims = _claims(dev_key[0])
    del claims[claim]
    assert _reason(_sign_with_real_key(claims)) == "token_missing_claim"


def test_a_token_whose_claims_disagree_with_its_key_is_refused(dev_key, other_key):
    # Correctly signed (say, by a compromised minting path) but naming another project than its key's.
    claims = _claims(dev_key[0], project=other_key[0].project.slug, project_id=other_key[0].project_id)
    assert _reason(_sign_with_real_key(claims)) == "token_malformed"


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "bm90anNvbg.e30.e30", "x" * 20000])
def test_garbage_is_malformed(garbage):
    assert _reason(garbage) == "token_malformed"


def test_token_of_a_revoked_key_is_refused(dev_key):
    row, _ = dev_key
    token, _ = token_mint(api_key_pk=str(row.pk))
    assert token_verify(token=token)
    api_key_revoke(api_key=row)
    assert _reason(token) == "token_key_revoked"
    with pytest.raises(TokenRejected) as caught:
        token_mint(api_key_pk=str(row.pk))
    assert caught.value.reason == "token_key_revoked"


def test_token_of_an_expired_key_is_refused(dev_key):
    row, _ = dev_key
    token, _ = token_mint(api_key_pk=str(row.pk))
    row.expires_at = timezone.now() - timedelta(seconds=1)
    row.save(update_fields=["expires_at"])
    assert _reason(token) == "token_key_expired"


def test_token_of_a_key_rotated_past_its_grace_is_refused_but_works_within_it(dev_key, owner):
    row, _ = dev_key
    token, _ = token_mint(api_key_pk=str(row.pk))
    api_key_rotate(api_key=row, grace=timedelta(hours=1), created_by=owner)
    assert token_verify(token=token).key_pk == str(row.pk)
    row.refresh_from_db()
    row.rotation_grace_ends_at = timezone.now() - timedelta(seconds=1)
    row.save(update_fields=["rotation_grace_ends_at"])
    assert _reason(token) == "token_key_expired"

