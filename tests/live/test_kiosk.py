"""Kiosk socket and board publishing, in one process (in-memory layer and board store)."""

import asyncio
import json

import pytest

from live import boards
from live.consumers import KioskConsumer
from ml_engine.schema import FEATURE_KEYS

pytestmark = pytest.mark.usefixtures("fresh_boards")


async def test_snapshot_then_live_events(open_socket):
    k = await open_socket("/ws/kiosk/lobby/")
    snapshot = await k.receive_json_from()
    assert snapshot == {
        "type": "snapshot",
        "board": "lobby",
        "sessions": [],
        "stats": {"active": 0, "by_band": {"low": 0, "moderate": 0, "high": 0}},
    }
    publisher = boards.BoardPublisher("lobby", "abc123")
    publisher.publish(risk=0.42, band="moderate", percent=42)
    event = await k.receive_json_from(timeout=2)
    assert event["type"] == "session" and event["id"] == "abc123"
    assert event["risk"] == 0.42 and event["band"] == "moderate" and event["updated_at"].endswith("Z")
    await publisher.close()
    assert await k.receive_json_from(timeout=2) == {"type": "session_end", "id": "abc123"}
    await k.disconnect()


async def test_late_kiosk_gets_the_session_in_its_snapshot(open_socket):
    publisher = boards.BoardPublisher("ward-3", "s1")
    publisher.publish(risk=0.7, band="high", percent=70)
    await asyncio.sleep(0.05)
    k = await open_socket("/ws/kiosk/ward-3/")
    snapshot = await k.receive_json_from()
    assert [s["id"] for s in snapshot["sessions"]] == ["s1"]
    assert snapshot["stats"] == {"active": 1, "by_band": {"low": 0, "moderate": 0, "high": 1}}
    await publisher.close()
    await k.disconnect()


async def test_boards_are_separate(open_socket):
    lobby = await open_socket("/ws/kiosk/lobby/")
    await lobby.receive_json_from()
    publisher = boards.BoardPublisher("other", "s2")
    publisher.publish(risk=0.1, band="low", percent=10)
    await asyncio.sleep(0.3)
    assert await lobby.receive_nothing(timeout=0.3)
    await publisher.close()
    await lobby.disconnect()


async def test_publishing_is_rate_limited_but_the_newest_gets_through(open_socket):
    k = await open_socket("/ws/kiosk/lobby/")
    await k.receive_json_from()
    publisher = boards.BoardPublisher("lobby", "fast")
    for i in range(50):
        publisher.publish(risk=i / 100, band="low", percent=i)
        await asyncio.sleep(0.005)
    events = []
    # receive_nothing waits without cancelling the app (a receive timeout would cancel it)
    while not await k.receive_nothing(timeout=1):
        events.append(await k.receive_json_from())
    assert events[-1]["risk"] == 0.49
    assert len(events) < 50
    await publisher.close()
    await k.disconnect()


async def test_withdraw_ends_the_session(open_socket):
    k = await open_socket("/ws/kiosk/lobby/")
    await k.receive_json_from()
    publisher = boards.BoardPublisher("lobby", "w")
    publisher.publish(risk=0.3, band="moderate", percent=30)
    assert (await k.receive_json_from(timeout=2))["type"] == "session"
    publisher.withdraw()
    assert await k.receive_json_from(timeout=2) == {"type": "session_end", "id": "w"}
    await publisher.close()
    await k.disconnect()


async def test_sessions_of_a_dead_process_expire(monkeypatch, open_socket):
    monkeypatch.setattr(boards, "EXPIRY_SECONDS", 0.3)
    monkeypatch.setattr(boards, "PRUNE_SECONDS", 0.1)
    # An entry nobody refreshes, as if its process had died.
    await boards.board_store().put(
        "lobby", boards.Entry(id="ghost", risk=0.5, band="high", percent=50, updated_at=boards.now_iso())
    )
    k = await open_socket("/ws/kiosk/lobby/")
    snapshot = await k.receive_json_from()
    assert [s["id"] for s in snapshot["sessions"]] == ["ghost"]
    assert await k.receive_json_from(timeout=3) == {"type": "session_end", "id": "ghost"}
    await k.disconnect()


async def test_kiosk_messages_never_carry_features(open_socket):
    k = await open_socket("/ws/kiosk/lobby/")
    await k.receive_json_from()
    publisher = boards.BoardPublisher("lobby", "p")
    publisher.publish(risk=0.2, band="moderate", percent=20)
    event = await k.receive_json_from(timeout=2)
    assert set(event) == {"type", "id", "risk", "band", "percent", "updated_at"}
    assert not set(event) & set(FEATURE_KEYS)
    await publisher.close()
    await k.disconnect()


async def test_kiosk_ignores_what_it_is_sent(open_socket):
    k = await open_socket("/ws/kiosk/lobby/")
    await k.receive_json_from()
    await k.send_to(text_data='{"type": "update"}')
    assert await k.receive_nothing(timeout=0.2)
    await k.disconnect()


@pytest.mark.parametrize("path", ["/ws/kiosk/bad name/", "/ws/kiosk/" + "x" * 65 + "/"])
async def test_invalid_board_names_are_refused(path, open_socket):
    await open_socket(path, accepted=False)  # refused at the handshake


def test_kiosk_page_says_what_it_shows(client, db):
    html = client.get("/kiosk/").content.decode()
    assert 'data-board="lobby"' in html and "js/kiosk.js" in html
    assert "<h1>Diabetes risk, shared in this room</h1>" in html
    assert "within five years" in html and "chose to share" in html
    # The legend: one item per band, with the range its percentages come from.
    assert html.count('class="legend-item band-') == 3
    assert 'data-board="ward-3"' in client.get("/kiosk/ward-3/").content.decode()
    assert client.get("/kiosk/bad%20name/").status_code == 404


def test_the_code_encodes_the_public_url_when_set(client, db, settings):
    settings.KIOSK_PUBLIC_URL = "https://risk.example.org"
    html = client.get("/kiosk/ward-3/", HTTP_HOST="127.0.0.1:8000").content.decode()
    assert 'href="https://risk.example.org/?board=ward-3"' in html
    assert 'aria-label="QR code for https://risk.example.org/?board=ward-3"' in html


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000", "kiosk.localhost"])
def test_a_loopback_kiosk_shows_a_setup_note_instead_of_a_code(client, db, settings, host):
    settings.ALLOWED_HOSTS = ["*"]
    html = client.get("/kiosk/", HTTP_HOST=host).content.decode()
    assert 'id="kiosk-setup"' in html and "KIOSK_PUBLIC_URL" in html
    assert "<svg" not in html and "?board=" not in html


def test_a_kiosk_opened_through_a_real_host_encodes_that_host(client, db):
    html = client.get("/kiosk/").content.decode()  # the test client's host, "testserver"
    assert 'href="http://testserver/?board=lobby"' in html and 'id="kiosk-setup"' not in html


async def test_a_heartbeat_comes_through_the_layer(monkeypatch, open_socket):
    monkeypatch.setattr(KioskConsumer, "heartbeat_seconds", 0.05)
    k = await open_socket("/ws/kiosk/lobby/")
    await k.receive_json_from()
    publisher = boards.BoardPublisher("lobby", "beat")
    publisher.publish(risk=0.2, band="low", percent=20)
    beats = []
    while len(beats) < 3:
        message = await k.receive_json_from(timeout=5)
        if message["type"] == "heartbeat":
            beats.append(message)
    assert set(beats[-1]) == {"type", "at", "active"} and beats[-1]["at"].endswith("Z")
    assert beats[-1]["active"] == 1
    await publisher.close()
    await k.disconnect()


async def test_a_crowded_board_gets_a_bounded_snapshot_with_totals(open_socket):
    store = boards.board_store()
    for i in range(700):
        risk = 0.5 + i / 2000
        entry = boards.Entry(
            id=f"s{i:04d}", risk=risk, band="high", percent=round(100 * risk), updated_at=boards.now_iso()
        )
        await store.put("crowd", entry)
    k = await open_socket("/ws/kiosk/crowd/")
    message = await k.receive_output(timeout=5)
    assert len(message["text"].encode()) < 40 * 1024
    snapshot = json.loads(message["text"])
    assert snapshot["stats"]["active"] == 700 and snapshot["stats"]["by_band"]["high"] == 700
    assert len(snapshot["sessions"]) == boards.SNAPSHOT_SESSIONS
    assert snapshot["sessions"][0]["id"] == "s0699"  # the highest risks are shown, highest first
    assert snapshot["sessions"][-1]["id"] == f"s{700 - boards.SNAPSHOT_SESSIONS:04d}"
    await k.disconnect()


async def test_a_kiosk_never_sees_entries_that_expired_before_it_connected(monkeypatch, open_socket):
    monkeypatch.setattr(boards, "EXPIRY_SECONDS", 0.1)
    await boards.board_store().put(
        "stale", boards.Entry(id="ghost", risk=0.5, band="high", percent=50, updated_at=boards.now_iso())
    )
    await asyncio.sleep(0.2)
    k = await open_socket("/ws/kiosk/stale/")
    snapshot = await k.receive_json_from()
    assert snapshot["sessions"] == [] and snapshot["stats"]["active"] == 0
    await k.disconnect()


async def test_boards_are_pruned_without_any_kiosk(monkeypatch):
    monkeypatch.setattr(boards, "EXPIRY_SECONDS", 0.3)
    monkeypatch.setattr(boards, "PRUNE_SECONDS", 0.05)
    store = boards.board_store()
    await store.put("nokiosk", boards.Entry(id="ghost", risk=0.5, band="high", percent=50, updated_at=boards.now_iso()))
    publisher = boards.BoardPublisher("nokiosk", "alive")  # a live session on this process
    publisher.publish(risk=0.2, band="low", percent=20)
    deadline = asyncio.get_running_loop().time() + 10
    while "ghost" in [e.id for e in await store.entries("nokiosk")]:
        assert asyncio.get_running_loop().time() < deadline, "the ghost was never pruned"
        await asyncio.sleep(0.05)
    await publisher.close()
    assert "nokiosk" not in boards.janitors.watched()  # the pruning stops with its last user


async def test_a_board_past_its_cap_shows_its_sessions_and_queues_new_ones(monkeypatch, open_socket):
    monkeypatch.setattr(boards, "MAX_SESSIONS", 2)
    k = await open_socket("/ws/kiosk/capped/")
    await k.receive_json_from()
    publishers = [boards.BoardPublisher("capped", sid) for sid in ("one", "two", "three")]
    for publisher in publishers:
        publisher.publish(risk=0.5, band="moderate", percent=50)
    seen = set()
    while not await k.receive_nothing(timeout=0.5):
        seen.add((await k.receive_json_from())["id"])
    assert seen == {"one", "two"}  # the third waits for a place
    await publishers[0].close()
    ended = await k.receive_json_from(timeout=5)
    assert ended == {"type": "session_end", "id": "one"}
    monkeypatch.setattr(boards, "HEARTBEAT_SECONDS", 0.05)  # the waiting session's next try
    publishers[2].publish(risk=0.6, band="moderate", percent=60)
    assert (await k.receive_json_from(timeout=5))["id"] == "three"
    for publisher in publishers[1:]:
        await publisher.close()
    await k.disconnect()


@pytest.mark.redis
async def test_a_frozen_redis_closes_the_kiosk_and_answers_new_ones_with_a_close(
    redis_boards, monkeypatch, open_socket
):
    monkeypatch.setattr(KioskConsumer, "heartbeat_seconds", 0.2)
    k = await open_socket("/ws/kiosk/frozen/")
    assert (await k.receive_json_from(timeout=10))["type"] == "snapshot"
    assert (await k.receive_json_from(timeout=10))["type"] == "heartbeat"
    redis_boards.freeze()
    while (message := await k.receive_output(timeout=30))["type"] != "websocket.close":
        assert json.loads(message["text"])["type"] == "heartbeat"  # one may have been on its way
    assert message == {"type": "websocket.close", "code": 1011, "reason": KioskConsumer.unavailable_reason}

    late = await open_socket("/ws/kiosk/frozen/")  # accepted at once, then closed with the reason
    assert await late.receive_output(timeout=30) == message
    await late.disconnect()
    await k.disconnect()
    redis_boards.thaw()
    again = await open_socket("/ws/kiosk/frozen/")
    assert (await again.receive_json_from(timeout=30))["type"] == "snapshot"
    await again.disconnect()
