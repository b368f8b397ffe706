"""Secrets never reach a log line: API keys, JWTs, token query parameters, credential headers and the
upstream credentials this process has decrypted are redacted from every record of every logger.

Three layers, because the servers log in three ways:
- ``install()`` (called from settings) wraps the log record factory, so every record any logger makes
  (uvicorn's handshake and access lines, daphne's, Django's, websockets' DEBUG handshake headers) is
  redacted when it is made, whatever handler later writes it;
- ``RedactSecretsFilter`` sits on the project's handler too (and cleans records a foreign factory made);
- daphne writes its access log straight to stdout, not through logging: ``install()`` redacts that.
"""
from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from urllib.parse import quote

REDACTED = "[REDACTED]"
_PATTERNS = [
    # API keys: sb_<env>_<38 base62>
    (re.compile(r"sb_(dev|stg|prod)_[0-9A-Za-z]{20,}"), r"sb_\1_[REDACTED]"),
    # JWTs: three base64url segments starting with a JSON header
    (re.compile(r"eyJ[0-9A-Za-z_-]+\.[0-9A-Za-z_-]+\.[0-9A-Za-z_-]*"), "[REDACTED-JWT]"),
    # Secrets passed in query strings
    (re.compile(r"((?<![A-Za-z])(?:token|apiKey|api_key|api-key|key|access_token|secret|password|credential)=)[^&\s\"']+",
                re.IGNORECASE), r"\1[REDACTED]"),
    # Credentials in headers, as logged by HTTP and WebSocket clients ("Authorization: Bearer x",
    # "> X-Api-Key: x", "'authorization': 'x'").
    (re.compile(r"((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?:Bearer|Basic|Token)\s+)?)[^\s\"',}]+",
                re.IGNORECASE), r"\1[REDACTED]"),
    (re.compile(r"\b([\w-]*(?:api[-_]?key|token|secret|credential|password)[\"']?\s*[:=]\s*[\"']?)"
                r"[^\s\"',}&]+", re.IGNORECASE), r"\1[REDACTED]"),
    # Every header line of a WebSocket handshake logged at DEBUG ("> Name: value") but the harmless ones:
    # a custom header may carry an upstream credential under any name.
    (re.compile(r"^([<>] (?!(?:Host|Upgrade|Connection|Sec-WebSocket-(?:Version|Key|Accept|Extensions)|User-Agent|"
                r"Server|Date|Content-Type|Content-Length|Origin)\b)[!#$%&'*+.^_`|~0-9A-Za-z-]+: ).+$",
                re.IGNORECASE | re.MULTILINE), r"\1[REDACTED]"),
]
_MIN_SECRET_CHARS = 8
_MAX_SECRETS = 10000


class _KnownSecrets:
    """Secrets this process has decrypted (upstream credentials), in the forms they travel in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: OrderedDict[str, None] = OrderedDict()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        if not isinstance(value, str) or len(value) < _MIN_SECRET_CHARS:
            return
        with self._lock:
            for form in {value, quote(value, safe="")}:
                self._values[form] = None
                self._values.move_to_end(form)
            while len(self._values) > _MAX_SECRETS:
                self._values.popitem(last=False)
            self._pattern = None

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None:
            with self._lock:
                if not self._values:
                    return text
                ordered = sorted(self._values, key=len, reverse=True)  # the longest form first
                pattern = self._pattern = re.compile("|".join(re.escape(value) for value in ordered))
        return pattern.sub(REDACTED, text)


known_secrets = _KnownSecrets()


def register_secret(value: str) -> None:
    """Redact this value (e.g. a decrypted upstream credential) from every later log line."""
    known_secrets.add(value)


def redact(text: str) -> str:
    text = known_secrets.redact(text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed record: leave it to the handler's own error reporting
        return
    cleaned = redact(message)
    if cleaned != message:
        args = record.args
        if isinstance(args, tuple) and args:
            # Redact argument by argument when that suffices: formatters such as uvicorn's access
            # formatter read record.args positionally.
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in args)
            record.msg = redact(record.msg) if isinstance(record.msg, str) else record.msg
            try:
                if record.getMessage() == cleaned:
                    pass
                else:
                    record.msg, record.args = cleaned, None
            except Exception:
                record.msg, record.args = cleaned, None
        else:
            record.msg, record.args = cleaned, None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_redacted", False):
            _redact_record(record)
        return True


_installed = False


def install() -> None:
    """Redact every record every logger makes, and daphne's access log. Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        record._redacted = True
        return record

    logging.setLogRecordFactory(factory)
    try:
        from daphne.access import AccessLogGenerator
    except ImportError:  # daphne is not installed: nothing to wrap
        return
    write_entry = AccessLogGenerator.write_entry

    def redacted_write_entry(self, host, date, request, *args, **kwargs):
        return write_entry(self, host, date, redact(str(request)), *args, **kwargs)

    setattr(AccessLogGenerator, "write_entry", redacted_write_entry)
