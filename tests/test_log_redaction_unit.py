"""Redaction of every log record: any logger (third-party ones too), any level, arguments kept
positional where a formatter needs them, tracebacks included."""
from __future__ import annotations

import logging

import pytest

from project.logging import redact, register_secret

pytestmark = pytest.mark.unit

KEY = "sb_dev_" + "A1b2C3d4E5" * 3 + "xyz12345"
JWT = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


@pytest.mark.parametrize("line", [
    f"GET /v1/conversation?apiKey={KEY}&channelKey=web-en-US",
    f'127.0.0.1:5 - "WebSocket /api/v1/realtime/session?token={JWT}" [accepted]',
    f"< authorization: Bearer {KEY}",
    "> X-Custom-Upstream: opaque-secret-value",
    f"Sec-WebSocket-Protocol: realtime, switchboard-jwt.{JWT}",
    f"{{'Authorization': 'Basic {KEY}'}}",
])
def test_secrets_in_any_form_are_redacted(line):
    cleaned = redact(line)
    assert KEY not in cleaned and JWT not in cleaned and "opaque-secret-value" not in cleaned
    assert "REDACTED" in cleaned


def test_public_parameters_survive():
    assert redact("/v1/conversation?deploymentKey=dep_1&channelKey=web-en-US") == (
        "/v1/conversation?deploymentKey=dep_1&channelKey=web-en-US")


def test_every_logger_and_level_is_redacted_with_positional_arguments_kept(caplog):
    register_secret("a-decrypted-upstream-credential")
    logger = logging.getLogger("uvicorn.access")
    with caplog.at_level(logging.DEBUG, logger="uvicorn.access"):
        logger.debug('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", f"/x?apiKey={KEY}", "1.1", 200)
        try:
            raise ValueError("upstream said a-decrypted-upstream-credential is wrong")
        except ValueError:
            logging.getLogger("some.library").exception("failed with %s", JWT)
    access, failure = caplog.records
    assert isinstance(access.args, tuple) and access.args[2] == "/x?apiKey=[REDACTED]"  # still positional
    text = caplog.text
    assert KEY not in text and JWT not in text and "a-decrypted-upstream-credential" not in text
    assert "upstream said [REDACTED] is wrong" in text
