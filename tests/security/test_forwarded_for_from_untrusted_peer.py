"""X-Forwarded-For is believed only from a trusted proxy (DJANGO_TRUSTED_PROXIES): a client that
makes one up is still throttled by its real address; behind a trusted proxy each forwarded client
has its own budget. Daphne runs without --proxy-headers; project/proxy.py decides."""

import requests

from tests.samples import TIMEOUT
from tests.servers import daphne_servers

MODEL = "/api/v1/model"


def test_made_up_forwarded_for_does_not_escape_the_throttle(server_env):
    server_env.extra.update(API_THROTTLE_ANON="2/minute")
    with daphne_servers(server_env, 1) as (server,):
        assert requests.get(server.http + MODEL, timeout=TIMEOUT).status_code == 200
        assert requests.get(server.http + MODEL, timeout=TIMEOUT).status_code == 200
        for fake in ("10.1.2.3", "203.0.113.7, 10.9.9.9", "::1"):
            response = requests.get(server.http + MODEL, headers={"X-Forwarded-For": fake}, timeout=TIMEOUT)
            assert response.status_code == 429, fake


def test_trusted_proxy_forwards_each_clients_address(server_env):
    server_env.extra.update(API_THROTTLE_ANON="2/minute", DJANGO_TRUSTED_PROXIES="127.0.0.1,10.0.0.0/8")
    with daphne_servers(server_env, 1) as (server,):

        def get(forwarded: str) -> int:
            headers = {"X-Forwarded-For": forwarded}
            return requests.get(server.http + MODEL, headers=headers, timeout=TIMEOUT).status_code

        assert [get("198.51.100.1") for _ in range(3)] == [200, 200, 429]
        # Another client behind the proxy has its own budget.
        assert get("198.51.100.2") == 200
        # Entries left of the first untrusted address are the client's own claims: ignored.
        assert get("192.0.2.99, 198.51.100.1") == 429
        # A chain through a second trusted proxy (10.0.0.5) still ends at the real client.
        assert get("198.51.100.1, 10.0.0.5") == 429
        assert get("198.51.100.3, 10.0.0.5") == 200
