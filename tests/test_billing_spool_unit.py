"""The usage spool: durable lines a process holds locked while it lives, adopted by another process
once it is gone, with a torn last line skipped and nothing else lost."""
from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from types import SimpleNamespace

import pytest

from accounts.billing import writer
from accounts.billing.ledger import KeyRef, UsageBatch
from accounts.billing.prices import Charge
from accounts.billing.spool import UsageSpool

pytestmark = pytest.mark.unit


def _batch(seq: int, **charges) -> UsageBatch:
    return UsageBatch(key=KeyRef(api_key_pk="8a0c", key_id="key_abc", project_id=3, environment_id=7),
                      session_id="sess_1", meter_id="m1", dialect="realtime", seq=seq,
                      amounts={"audio_in_seconds": Decimal("1.250"), "text_in_tokens": Decimal(11)},
                      occurred_at=dt.datetime(2026, 12, 1, 22, 0, tzinfo=dt.UTC),
                      charges={m: Charge(*c) for m, c in charges.items()} or None)


def test_a_living_process_keeps_its_spool_and_a_dead_ones_is_adopted_once(tmp_path):
    mine = UsageSpool(tmp_path)
    mine.append([_batch(1, audio_in_seconds=(1001, 1251, 250), text_in_tokens=(5, 55, 0)), _batch(2)])
    assert mine.path is not None
    with open(mine.path, "ab") as handle:  # the process died while appending a third
        handle.write(b'{"key": ["8a0c", "key_ab')

    peer = UsageSpool(tmp_path)
    assert peer.adopt_orphans() == []  # its owner is alive (holds the lock)

    mine._handle.close()  # the owner dies: its lock goes with it
    adopted = peer.adopt_orphans()
    assert [batch.seq for batch in adopted] == [1, 2]
    assert adopted[0].amounts == {"audio_in_seconds": Decimal("1.250"), "text_in_tokens": 11}
    assert adopted[0].charges["audio_in_seconds"] == Charge(1001, 1251, 250) and adopted[1].charges is None
    assert adopted[0].idempotency_key("text_in_tokens") == "sess_1:m1:1:text_in_tokens"
    # Now durably in the adopter's own spool, and the dead process's file is gone.
    assert not mine.path.exists() and peer.path is not None and peer.path.exists()
    assert UsageSpool(tmp_path).adopt_orphans() == []  # the adopter is alive: nobody takes it again

    peer.replace([adopted[1]])
    assert len(peer.path.read_bytes().splitlines()) == 1
    peer.clear()
    assert list(tmp_path.glob("usage-*.jsonl")) == []


def test_the_spool_keeper_stops_quietly_once_the_writer_thread_is_shut_down(settings, caplog):
    """At process exit the writer's executor is shut down before the daemon keeper wakes: the keeper
    must end, not log a failure every interval (and write to closed log streams) until the process dies."""
    settings.REALTIME_METER_FLUSH_SECONDS = 0.01
    executor = ThreadPoolExecutor(max_workers=1)
    executor.shutdown()
    keeper = threading.Thread(target=writer._keep, args=(SimpleNamespace(executor=executor),), daemon=True)
    with caplog.at_level("ERROR", logger="accounts.billing.writer"):
        keeper.start()
        keeper.join(timeout=5)
    assert not keeper.is_alive()
    assert [r for r in caplog.records if r.name == "accounts.billing.writer"] == []
