"""Secrets at rest: upstream credentials and JWT signing private keys are stored Fernet-encrypted.

The keys come from CREDENTIALS_ENCRYPTION_KEY (the first encrypts, every one decrypts, so the key can
be rotated by prepending a new one); when unset, one key is derived from SECRET_KEY.
"""
from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionFailed(Exception):
    """Stored ciphertext that none of the configured keys opens (the key changed or was lost)."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        digest = hashlib.sha256(b"switchboard-credentials:" + secret_key.encode()).digest()
        keys = (base64.urlsafe_b64encode(digest).decode(),)
    return MultiFernet([Fernet(key) for key in keys])


def _current() -> MultiFernet:
    # Keyed on the settings values so a test that overrides them gets the matching keys.
    return _fernet(tuple(settings.CREDENTIALS_ENCRYPTION_KEYS), settings.SECRET_KEY)


def secret_encrypt(plaintext: str) -> str:
    """Ciphertext as text; the empty string stays empty (meaning 'not set')."""
    if not plaintext:
        return ""
    return _current().encrypt(plaintext.encode()).decode()


def secret_decrypt(ciphertext: str) -> str:
    if not ciphertext:
        return ""
    try:
        return _current().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed("stored secret cannot be decrypted with the configured CREDENTIALS_ENCRYPTION_KEY") from None
