"""Per-session usage counting: plain counters updated inline on the relay path (no task, no lock, no
database), taken by the process's usage writer (accounts.billing.writer) every
REALTIME_METER_FLUSH_SECONDS, which writes all live sessions of the process in one transaction.

Billing uses what was relayed, never what a client or an upstream claims:
- Audio seconds come from byte counts (the base64 length, nothing decoded) and the format's bytes per
  second, from an allow-list: PCM16 24 kHz mono (48,000 B/s), G.711 mu-law and A-law 8 kHz (8,000 B/s).
  The metered format changes only when the upstream confirms it (its session.created or
  session.updated); a client's session.update changes nothing here, and a confirmed format outside the
  list is logged and ignored (the session keeps the format it had).
- Token usage from an upstream's response.done is used only as non-negative integers up to
  MAX_TOKENS_PER_RESPONSE; anything else is logged (field and type, never the value) and ignored.
- ``add`` ignores anything but a positive int or Decimal, so no count lowers another.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from decimal import Decimal

from django.utils import timezone

from accounts.billing.ledger import KeyRef, UsageBatch, quantity_quantize, usage_amounts_clean
from accounts.billing.writer import (
    usage_report,
    usage_source_add,
    usage_source_discard,
    usage_writer_close,
    usage_writer_observe,
)
from realtime.gateway import drain, metrics

logger = logging.getLogger(__name__)

PCM16_24K = 48000
G711_8K = 8000
# The largest token count a single response can honestly report (far above any model's context).
MAX_TOKENS_PER_RESPONSE = 10_000_000

# What waits in the spool, for /metrics; and on SIGTERM, once the sessions are closed, whatever is still
# counted is written (or spooled) before the process exits.
usage_writer_observe(metrics.usage_spool_observe)
drain.drain_hook("usage-writer", usage_writer_close)

_BETA_FORMATS = {"pcm16": PCM16_24K, "g711_ulaw": G711_8K, "g711_alaw": G711_8K}
_GA_FORMATS = {"audio/pcmu": G711_8K, "audio/pcma": G711_8K}


def audio_bytes_per_second(audio_format) -> int | None:
    """Bytes per second of an allowed realtime audio format, in either protocol generation's spelling
    (beta strings "pcm16", "g711_ulaw", "g711_alaw"; GA objects {"type": "audio/pcm", "rate": 24000},
    {"type": "audio/pcmu"}, {"type": "audio/pcma"}); None for anything else."""
    if isinstance(audio_format, str):
        return _BETA_FORMATS.get(audio_format) or _GA_FORMATS.get(audio_format)
    if isinstance(audio_format, dict):
        kind = audio_format.get("type")
        if kind in _GA_FORMATS:
            return _GA_FORMATS[kind]
        if kind == "audio/pcm":
            rate = audio_format.get("rate", 24000)
            # Exactly 24000: not 24000.5, not True (a bool is an int in Python), not "24000".
            if type(rate) is int and rate == 24000:
                return PCM16_24K
    return None


def base64_decoded_length(text: str) -> int:
    """Bytes a base64 string decodes to, without decoding it."""
    length = len(text)
    if length == 0:
        return 0
    padding = 2 if text.endswith("==") else 1 if text.endswith("=") else 0
    return max(0, length * 3 // 4 - padding)


def session_audio_formats(session) -> tuple[object | None, object | None]:
    """(input format, output format) named in a session.created / session.updated ``session`` object."""
    if not isinstance(session, dict):
        return None, None
    audio = session.get("audio")
    in_fmt = out_fmt = None
    if isinstance(audio, dict):
        in_fmt = audio["input"].get("format") if isinstance(audio.get("input"), dict) else None
        out_fmt = audio["output"].get("format") if isinstance(audio.get("output"), dict) else None
    in_fmt = in_fmt if in_fmt is not None else session.get("input_audio_format")
    out_fmt = out_fmt if out_fmt is not None else session.get("output_audio_format")
    return in_fmt, out_fmt


def _token_count(value, *, field: str, session_id: str) -> int:
    if value is None:
        return 0
    if type(value) is int and 0 <= value <= MAX_TOKENS_PER_RESPONSE:
        return value
    logger.warning("session %s: upstream usage %s ignored (%s%s, expected an integer 0..%d)", session_id, field,
                   type(value).__name__, f" {value}" if type(value) in (int, float) else "", MAX_TOKENS_PER_RESPONSE)
    return 0


def response_usage_tokens(usage, *, session_id: str = "") -> tuple[int, int]:
    """(text tokens in, text tokens out) of a response.done ``usage``, each valid or 0. Text tokens
    when the details give them, else the totals."""
    if usage is None:
        return 0, 0
    if not isinstance(usage, dict):
        logger.warning("session %s: upstream usage ignored (%s, expected an object)", session_id,
                       type(usage).__name__)
        return 0, 0
    counts = []
    for side in ("input", "output"):
        details = usage.get(f"{side}_token_details")
        if isinstance(details, dict) and "text_tokens" in details:
            counts.append(_token_count(details["text_tokens"], field=f"{side}_token_details.text_tokens",
                                       session_id=session_id))
        else:
            counts.append(_token_count(usage.get(f"{side}_tokens"), field=f"{side}_tokens", session_id=session_id))
    return counts[0], counts[1]


class SessionMeter:
    """One session's counters. ``add``/``add_audio`` are inline and cheap; the process's usage writer
    takes them every flush interval (``usage_take``); ``flush`` and ``close`` return once what was
    counted is durable (in the ledger or the spool). ``start`` is kept for callers written for the
    per-session flush task this replaced: it does nothing."""

    __slots__ = ("key", "session_id", "meter_id", "dialect", "count_session_time", "_pending", "_audio_bytes",
                 "_seq", "_mark", "_session_us", "_closed", "_in_bps", "_out_bps", "__weakref__")

    def __init__(self, *, key, session_id: str, dialect: str, count_session_time: bool = True):
        self.key = KeyRef.of(key)
        self.session_id = session_id
        # Rows of this meter stay apart from any other session that uses the same id later on.
        self.meter_id = uuid.uuid4().hex[:12]
        self.dialect = dialect
        # Off for dialects billed per message or task rather than per connected second.
        self.count_session_time = count_session_time
        self._pending: dict[str, Decimal] = {}
        # Audio bytes per (metric, bytes per second), exact integers: seconds only when taken.
        self._audio_bytes: dict[tuple[str, int], int] = {}
        self._seq = 0
        self._mark = asyncio.get_running_loop().time()
        # Connected time in whole microseconds, billed in whole milliseconds (the rest carried): the
        # one metric every live session has at every take, so kept as an int, not a Decimal.
        self._session_us = 0
        self._closed = False
        # The audio formats the upstream confirmed (PCM16 24 kHz until it says otherwise).
        self._in_bps = self._out_bps = PCM16_24K
        usage_source_add(self)

    # --- What the realtime protocol carries (the gateway calls these for every relayed event) -------

    def client_event(self, event: dict) -> None:
        """A client event relayed upstream: the audio it carries (input_audio_buffer.append, and
        input_audio parts of conversation.item.create), at the confirmed input format. A client's
        session.update changes nothing: only the upstream's confirmation does (``upstream_event``)."""
        count = audio_event_bytes(event)
        if count:
            self.add_audio_bytes("audio_in_seconds", count, self._in_bps)

    def upstream_event(self, kind: str, event: dict) -> None:
        """An upstream event: output audio, response.done token usage, confirmed audio formats."""
        if kind in ("response.output_audio.delta", "response.audio.delta"):
            delta = event.get("delta")
            if isinstance(delta, str):
                self.add_audio_bytes("audio_out_seconds", base64_decoded_length(delta), self._out_bps)
        elif kind == "response.done":
            response = event.get("response")
            tokens_in, tokens_out = response_usage_tokens(
                response.get("usage") if isinstance(response, dict) else None, session_id=self.session_id)
            self.add("text_in_tokens", tokens_in)
            self.add("text_out_tokens", tokens_out)
        elif kind in ("session.created", "session.updated"):
            in_fmt, out_fmt = session_audio_formats(event.get("session"))
            self._in_bps = self._confirmed(in_fmt, self._in_bps, "input")
            self._out_bps = self._confirmed(out_fmt, self._out_bps, "output")

    def _confirmed(self, audio_format, current: int, side: str) -> int:
        if audio_format is None:
            return current
        rate = audio_bytes_per_second(audio_format)
        if rate is None:
            logger.warning("session %s: upstream confirmed an %s audio format outside the metered list; "
                           "still metering %d bytes per second", self.session_id, side, current)
            return current
        return rate

    def add(self, metric: str, quantity) -> None:
        if isinstance(quantity, bool) or not isinstance(quantity, (int, Decimal)):
            return
        if isinstance(quantity, Decimal) and not quantity.is_finite() or not quantity > 0:
            return
        self._pending[metric] = self._pending.get(metric, Decimal(0)) + quantity

    def add_audio_bytes(self, metric: str, count: int, bytes_per_second: int) -> None:
        if count > 0:
            key = (metric, bytes_per_second)
            self._audio_bytes[key] = self._audio_bytes.get(key, 0) + count

    def add_audio(self, metric: str, b64_audio: str, bytes_per_second: int) -> None:
        self.add_audio_bytes(metric, base64_decoded_length(b64_audio), bytes_per_second)

    def start(self) -> None:
        """Nothing to start: the process's usage writer takes this meter's usage every interval."""

    def _account_session_time(self) -> None:
        if not self.count_session_time or self._closed:
            return
        now = asyncio.get_running_loop().time()
        elapsed, self._mark = now - self._mark, now
        if elapsed > 0:
            self._session_us += round(elapsed * 1_000_000)

    def usage_take(self, *, final: bool = False) -> UsageBatch | None:
        """What was counted since the last take, as the next numbered batch (None: nothing)."""
        self._account_session_time()
        if self._audio_bytes:
            audio, self._audio_bytes = self._audio_bytes, {}
            for (metric, bytes_per_second), count in audio.items():
                self.add(metric, Decimal(count) / Decimal(bytes_per_second))
        amounts: dict[str, Decimal] = {}
        if self._pending:  # an idle session has nothing here: the common take skips all of this
            rounded = {metric: quantity_quantize(metric, quantity) for metric, quantity in self._pending.items()}
            # Sub-millisecond remainders stay pending, so rounding never loses time.
            self._pending = {m: left for m, q in self._pending.items() if (left := q - rounded[m]) > 0}
            amounts = usage_amounts_clean({metric: q for metric, q in rounded.items() if q}, context=self.session_id)
        milliseconds = self._session_us // 1000
        if milliseconds:
            self._session_us -= milliseconds * 1000
            amounts["session_seconds"] = amounts.get("session_seconds", Decimal(0)) + Decimal(milliseconds).scaleb(-3)
        if not amounts and not (final and self._seq):
            return None
        self._seq += 1
        return UsageBatch(key=self.key, session_id=self.session_id, meter_id=self.meter_id, dialect=self.dialect,
                          seq=self._seq, amounts=amounts, occurred_at=timezone.now(), final=final)

    async def flush(self) -> None:
        """Everything counted so far, durable on return (a task result before it is delivered), also
        when the writer's periodic take got it first and is still writing it."""
        await usage_report(self.usage_take())

    async def close(self) -> None:
        """The session ended: its last usage, durable on return. Counting after this is ignored."""
        if self._closed:
            return
        self._account_session_time()
        self._closed = True
        usage_source_discard(self)
        await usage_report(self.usage_take(final=True))


def audio_event_bytes(event: dict) -> int:
    """Audio bytes a client event carries into the conversation: input_audio_buffer.append's
    ``audio`` and the input_audio parts of conversation.item.create."""
    kind = event.get("type")
    if kind == "input_audio_buffer.append":
        audio = event.get("audio")
        return base64_decoded_length(audio) if isinstance(audio, str) else 0
    if kind == "conversation.item.create":
        item = event.get("item")
        content = item.get("content") if isinstance(item, dict) else None
        if not isinstance(content, list):
            return 0
        total = 0
        for part in content:
            if isinstance(part, dict) and part.get("type") == "input_audio" and isinstance(part.get("audio"), str):
                total += base64_decoded_length(part["audio"])
        return total
    return 0

