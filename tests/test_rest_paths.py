"""REST paths have one form, without a trailing slash (the OpenAPI schema lists only that), and the
slashed form of every path is an alias that answers the same, for any method, so no client breaks."""
import pytest
import yaml
from django.test import Client
from rest_framework.test import APIClient

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_the_schema_lists_every_path_without_a_trailing_slash(client):
    schema = yaml.safe_load(Client().get("/api/schema/").content)
    paths = [p for p in schema["paths"] if p.startswith("/api/v1/")]
    assert len(paths) >= 14
    assert [p for p in paths if p.endswith("/")] == []


@pytest.mark.parametrize("suffix", ["", "/"])
def test_either_form_answers_the_same(dev_key, project, suffix):
    _row, secret = dev_key
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    me = api.get(f"/api/v1/me{suffix}")
    assert me.status_code == 200 and me.json()["project"]["slug"] == project.slug
    token = api.post(f"/api/v1/tokens{suffix}", {}, format="json")
    assert token.status_code == 201, token.content
    assert "token" in token.json()


@pytest.mark.parametrize("suffix", ["", "/"])
def test_either_form_of_a_session_authenticated_write_still_needs_csrf(owner, project, suffix):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    refused = client.post(f"/api/v1/projects/{project.slug}/agents{suffix}", {"name": "x"}, content_type="application/json")
    assert refused.status_code == 403
    listing = client.get(f"/api/v1/projects/{project.slug}/agents{suffix}")
    assert listing.status_code == 200


def test_an_unknown_slashed_path_is_a_json_404(dev_key):
    response = APIClient().get("/api/v1/nothing/here/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
