"""Every path of the one API key verification function."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.keys import KEY_PATTERN, KeyRejected, api_key_verify, checksum, key_generate
from accounts.models import ApiKey
from accounts.services import api_key_revoke, api_key_rotate

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_generated_keys_match_the_documented_format():
    for env in ("dev", "stg", "prod"):
        raw = key_generate(env_short=env)
        match = KEY_PATTERN.match(raw)
        assert match and match.group(1) == env
        assert checksum(raw[:-6]) == raw[-6:]


def test_keys_are_random():
    assert len({key_generate(env_short="dev") for _ in range(200)}) == 200


def test_the_secret_is_stored_nowhere(dev_key):
    row, raw = dev_key
    with connection.cursor() as cursor:
        for model in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{model}"')
            for record in cursor.fetchall():
                assert not any(raw in str(value) for value in record), model
    assert row.masked.startswith("sb_dev_") and raw.endswith(row.last4)


def test_valid_key_resolves_to_its_project_and_environment(dev_key, project):
    row, raw = dev_key
    verified = api_key_verify(raw=raw)
    assert verified.project_id == project.pk
    assert verified.environment == "development"
    assert verified.key_id == row.key_id


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("", "missing_key"),
        ("sb_dev_short", "malformed_key"),
        ("sk_dev_" + "a" * 38, "malformed_key"),
        ("sb_xyz_" + "a" * 38, "malformed_key"),
    ],
)
def test_malformed_keys_are_refused_without_a_query(raw, reason):
    with CaptureQueriesContext(connection) as queries, pytest.raises(KeyRejected) as exc:
        api_key_verify(raw=raw)
    assert exc.value.reason == reason
    assert len(queries) == 0


def test_a_mistyped_key_fails_its_checksum_without_a_query(dev_key):
    _, raw = dev_key
    typo = raw[:10] + ("A" if raw[10] != "A" else "B") + raw[11:]
    with CaptureQueriesContext(connection) as queries, pytest.raises(KeyRejected) as exc:
        api_key_verify(raw=typo)
    assert exc.value.reason == "bad_checksum"
    assert len(queries) == 0


def test_unknown_key():
    with pytest.raises(KeyRejected) as exc:
        api_key_verify(raw=key_generate(env_short="dev"))
    assert exc.value.reason == "unknown_key"


def test_a_valid_key_costs_one_query_then_is_cached(dev_key):
    _, raw = dev_key
    with CaptureQueriesContext(connection) as queries:
        api_key_verify(raw=raw)
    selects = [q for q in queries if q["sql"].lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1
    with CaptureQueriesContext(connection) as queries:
        api_key_verify(raw=raw)
    assert len(queries) == 0


def test_revoked_key_is_refused_at_once_even_when_cached(dev_key):
    row, raw = dev_key
    api_key_verify(raw=raw)
    api_key_revoke(api_key=row)
    with pytest.raises(KeyRejected) as exc:
        api_key_verify(raw=raw)
    assert exc.value.reason == "revoked_key"


def test_expired_key(dev_key):
    row, raw = dev_key
    ApiKey.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(KeyRejected) as exc:
        api_key_verify(raw=raw)
    assert exc.value.reason == "expired_key"


def test_rotated_key_works_within_grace_and_shares_the_stable_id(dev_key, owner):
    row, raw = dev_key
    new_row, new_raw = api_key_rotate(api_key=row, grace=timedelta(hours=1), created_by=owner)
    assert api_key_verify(raw=raw).key_id == api_key_verify(raw=new_raw).key_id == row.key_id
    assert new_row.rotated_from_id == row.pk


def test_rotated_key_past_grace_is_refused(dev_key, owner):
    row, raw = dev_key
    api_key_rotate(api_key=row, grace=timedelta(hours=1), created_by=owner)
    ApiKey.objects.filter(pk=row.pk).update(rotation_grace_ends_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(KeyRejected) as exc:
        api_key_verify(raw=raw)
    assert exc.value.reason == "rotated_key"


def test_rotation_with_no_grace_refuses_the_old_key_immediately(dev_key, owner):
    row, raw = dev_key
    _, new_raw = api_key_rotate(api_key=row, grace=timedelta(0), created_by=owner)
    with pytest.raises(KeyRejected) as exc:
        api_key_verify(raw=raw)
    assert exc.value.reason == "rotated_key"
    assert api_key_verify(raw=new_raw)


def test_last_used_is_written_at_most_once_a_minute(dev_key):
    row, raw = dev_key
    api_key_verify(raw=raw)
    first = ApiKey.objects.get(pk=row.pk).last_used_at
    assert first is not None
    from accounts.keys import key_cache

    key_cache._entries.clear()  # force the database path again; the write memo stays
    with CaptureQueriesContext(connection) as queries:
        api_key_verify(raw=raw)
    assert not any(q["sql"].lstrip().upper().startswith("UPDATE") for q in queries)
    assert ApiKey.objects.get(pk=row.pk).last_used_at == first


def test_one_key_rule_everywhere_a_revocation_date_ahead_still_revokes(dev_key):
    """accounts.keys.api_key_unusable_reason is the one rule: key verification, token minting and the
    gateway's re-check agree (a revoked_at set in the future used to authenticate while live sessions
    were closed)."""
    from datetime import timedelta

    from django.utils import timezone

    from accounts.keys import KeyRejected, api_key_verify, api_keys_unusable, key_cache
    from accounts.models import ApiKey
    from realtime.gateway.tokens import TokenRejected, token_mint

    row, raw = dev_key
    ApiKey.objects.filter(pk=row.pk).update(revoked_at=timezone.now() + timedelta(days=1))
    key_cache.clear()
    with pytest.raises(KeyRejected) as rejected:
        api_key_verify(raw=raw)
    assert rejected.value.reason == "revoked_key"
    with pytest.raises(TokenRejected) as refused:
        token_mint(api_key_pk=str(row.pk))
    assert refused.value.reason == "token_key_revoked"
    assert api_keys_unusable(api_key_pks=[str(row.pk)]) == [str(row.pk)]
