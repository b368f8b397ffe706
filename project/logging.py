"""A log filter that strips API keys, JWTs and token query parameters from every record."""
import logging
import re

_PATTERNS = [
    # API keys: sb_<env>_<38 base62>
    (re.compile(r"sb_(dev|stg|prod)_[0-9A-Za-z]{20,}"), r"sb_\1_[REDACTED]"),
    # JWTs: three base64url segments starting with a JSON header
    (re.compile(r"eyJ[0-9A-Za-z_-]+\.[0-9A-Za-z_-]+\.[0-9A-Za-z_-]*"), "[REDACTED-JWT]"),
    # Secrets passed in query strings
    (re.compile(r"((?:token|apiKey|api_key|key)=)[^&\s\"']+", re.IGNORECASE), r"\1[REDACTED]"),
    (re.compile(r"(Authorization:\s*(?:Bearer|Basic)\s+)\S+", re.IGNORECASE), r"\1[REDACTED]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True
