"""Membership and project rules: a project always keeps an owner, admins cannot touch owners, only an
owner deletes; deleting a project archives it: its keys stop working, its ledger stays."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.exceptions import Conflict, NotAllowed
from accounts.keys import KeyRejected, api_key_verify
from accounts.models import Membership, Role, UsageRecord
from accounts.selectors import project_list_for_user
from accounts.services import (
    membership_change_role,
    membership_invite,
    membership_remove,
    project_create,
    project_delete,
)
from tests.conftest import make_user

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2 makes each fixture user cost ~1s on a loaded machine; these tests are not about hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _m(user, project):
    return Membership.objects.select_related("project", "user").get(user=user, project=project)


def test_admin_cannot_grant_or_remove_the_owner_role(project, owner, outsider):
    admin = make_user("admin@example.com")
    Membership.objects.create(user=admin, project=project, role=Role.ADMIN)
    with pytest.raises(NotAllowed):
        membership_invite(by=_m(admin, project), email=outsider.email, role=Role.OWNER)
    with pytest.raises(NotAllowed):
        membership_change_role(by=_m(admin, project), membership=_m(owner, project), role=Role.MEMBER)
    with pytest.raises(NotAllowed):
        membership_remove(by=_m(admin, project), membership=_m(owner, project))
    assert _m(owner, project).role == Role.OWNER


def test_ownership_can_be_handed_over_and_project_owner_follows(project, owner, member):
    membership_change_role(by=_m(owner, project), membership=_m(member, project), role=Role.OWNER)
    # Now two owners: the original may step down, and Project.owner names a current owner.
    membership_change_role(by=_m(owner, project), membership=_m(owner, project), role=Role.ADMIN)
    project.refresh_from_db()
    assert project.owner == member
    with pytest.raises(Conflict):
        membership_remove(by=_m(member, project), membership=_m(member, project))
    with pytest.raises(NotAllowed):
        project_delete(by=_m(owner, project))


def test_owner_leaving_after_handover_reassigns_owner(project, owner, member):
    membership_change_role(by=_m(owner, project), membership=_m(member, project), role=Role.OWNER)
    membership_remove(by=_m(owner, project), membership=_m(owner, project))
    project.refresh_from_db()
    assert project.owner == member and not Membership.objects.filter(user=owner, project=project).exists()


def test_project_delete_archives_it_keeps_its_ledger_and_refuses_its_keys(project, owner, dev_key):
    row, raw = dev_key
    api_key_verify(raw=raw)
    slug = project.slug
    UsageRecord.objects.create(
        api_key=row, key_id=row.key_id, project=project, environment=row.environment, session_id="s1",
        dialect="realtime", metric="messages", quantity=Decimal("1"), occurred_at=timezone.now(), idempotency_key="x1",
    )
    project_delete(by=_m(owner, project))
    project.refresh_from_db()
    assert project.deleted_at is not None and project.slug != slug
    assert list(UsageRecord.objects.values_list("idempotency_key", flat=True)) == ["x1"]
    assert not project_list_for_user(user=owner).exists()
    with pytest.raises(KeyRejected) as exc:
        api_key_verify(raw=raw)
    assert exc.value.reason == "revoked_key"
    # The slug is free again.
    assert project_create(name="Acme Voice", owner=owner, slug=slug).slug == slug


def test_expired_key_shows_expired_status(project, owner):
    from accounts.selectors import api_key_status
    from accounts.services import api_key_issue

    row, _raw = api_key_issue(by=_m(owner, project), environment="development", name="short",
                              expires_at=timezone.now() + timedelta(seconds=30))
    assert api_key_status(api_key=row) == "active"
    assert api_key_status(api_key=row, now=timezone.now() + timedelta(minutes=1)) == "expired"
