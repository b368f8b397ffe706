"""The fault-test harness itself: a whole fleet on loopback comes up, answers through the shipped
haproxy configuration, and each part can be stopped and started again."""
import httpx
import pytest

pytestmark = [pytest.mark.live, pytest.mark.timeout(180), pytest.mark.xdist_group("long-waits")]


def test_fleet_comes_up_and_each_part_restarts(cluster_factory):
    fleet = cluster_factory(gateways=2)
    key = fleet.create_key()
    assert key.startswith("sb_dev_")
    assert fleet.postgres.sql("select count(*) from accounts_apikey")[0][0] == 1

    assert httpx.get(f"{fleet.entry.http_url}/healthz", timeout=5).status_code == 200
    for gateway in fleet.gateways:
        assert httpx.get(f"{gateway.http_url}/readyz", timeout=5).json()["status"] == "ready"

    fleet.redis.stop()
    fleet.redis.start()
    fleet.postgres.stop()
    fleet.postgres.start()
    fleet.postgres.pause()
    fleet.postgres.resume()
    assert fleet.postgres.sql("select count(*) from accounts_apikey")[0][0] == 1
    fleet.gateways[1].kill()
    fleet.gateways[1].start()
    assert httpx.get(f"{fleet.gateways[1].http_url}/healthz", timeout=5).status_code == 200
