"""The public JWKS and signing-key rotation without downtime."""
import base64
from datetime import timedelta
from io import StringIO

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.core.management import call_command
from django.utils import timezone

from realtime.gateway.tokens import AUDIENCE, TokenRejected, public_key_cache, token_mint, token_verify
from realtime.models import SigningKey

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _fresh_public_keys():
    public_key_cache.clear()
    yield
    public_key_cache.clear()


def _jwks(client) -> dict:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return {key["kid"]: key for key in response.json()["keys"]}


def test_jwks_publishes_an_okp_key_that_verifies_minted_tokens(client, dev_key):
    token, _ = token_mint(api_key_pk=str(dev_key[0].pk))
    keys = _jwks(client)
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = keys[kid]
    assert {k: jwk[k] for k in ("kty", "crv", "alg", "use")} == {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig"}
    assert "d" not in jwk  # never the private part
    # An outside verifier needs nothing but the JWKS: check the token with the published key alone.
    public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(jwk["x"] + "=="))
    payload = jwt.decode(token, public, algorithms=["EdDSA"], audience=AUDIENCE)
    assert payload["sub"] == dev_key[0].key_id


def test_jwks_makes_a_key_on_first_need(client, db):
    assert not SigningKey.objects.exists()
    assert len(_jwks(client)) == 1
    assert len(_jwks(client)) == 1  # and not another one on every request


def test_rotation_overlaps_old_tokens_keep_verifying_and_both_keys_are_published(client, dev_key):
    row, _ = dev_key
    old_token, _ = token_mint(api_key_pk=str(row.pk))
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    token_verify(token=old_token)  # warm the verifier's key cache, as a running gateway would have

    out = StringIO()
    call_command("rotate_signing_key", stdout=out)

    new_token, _ = token_mint(api_key_pk=str(row.pk))
    new_kid = jwt.get_unverified_header(new_token)["kid"]
    assert new_kid != old_kid and new_kid in out.getvalue()
    assert token_verify(token=old_token).key_pk == str(row.pk)
    assert token_verify(token=new_token).key_pk == str(row.pk)
    assert set(_jwks(client)) == {old_kid, new_kid}
    retired = SigningKey.objects.get(kid=old_kid)
    assert retired.retired_at is not None
    assert timedelta(minutes=59) < retired.verify_until - timezone.now() <= timedelta(hours=1)


def test_after_the_overlap_the_old_key_leaves_the_jwks_and_stops_verifying(client, dev_key):
    row, _ = dev_key
    old_token, _ = token_mint(api_key_pk=str(row.pk))
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    call_command("rotate_signing_key", "--verify-seconds", "0", stdout=StringIO())
    public_key_cache.clear()  # other processes notice within the key cache's lifetime
    with pytest.raises(TokenRejected) as caught:
        token_verify(token=old_token)
    assert caught.value.reason == "token_bad_signature"
    assert old_kid not in _jwks(client)


def test_rotation_refuses_a_negative_overlap(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("rotate_signing_key", "--verify-seconds", "-1", stdout=StringIO())


def test_private_keys_are_stored_encrypted(dev_key):
    token_mint(api_key_pk=str(dev_key[0].pk))
    key = SigningKey.objects.get()
    assert "PRIVATE KEY" not in key.private_key_encrypted
    assert key.private_key_encrypted.startswith("gAAAA")  # a Fernet token


def test_an_emergency_rotation_also_ends_keys_retired_by_an_earlier_rotation(client, dev_key):
    row, _ = dev_key
    first_token, _ = token_mint(api_key_pk=str(row.pk))
    call_command("rotate_signing_key", stdout=StringIO())  # the first key keeps verifying for an hour
    second_token, _ = token_mint(api_key_pk=str(row.pk))
    call_command("rotate_signing_key", "--verify-seconds", "0", stdout=StringIO())
    public_key_cache.clear()
    for token in (first_token, second_token):
        with pytest.raises(TokenRejected) as caught:
            token_verify(token=token)
        assert caught.value.reason == "token_bad_signature"
    assert len(_jwks(client)) == 1
