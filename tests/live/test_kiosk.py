"""Kiosk socket and board publishing, in one process (in-memory layer and board store)."""

import asyncio

import pytest
from channels.testing import WebsocketCommunicator

from live import boards
from live.routing import websocket_urlpatterns
from ml_engine.schema import FEATURE_KEYS


@pytest.fixture
def application():
    from channels.routing import URLRouter

    return URLRouter(websocket_urlpatterns)


@pytest.fixture(autouse=True)
def fresh_boards(monkeypatch):
    monkeypatch.setattr(boards, "_store", None)
    from channels.layers import channel_layers

    channel_layers.backends.clear()


async def kiosk(application, board="lobby"):
    communicator = WebsocketCommunicator(application, f"/ws/kiosk/{board}/")
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def test_snapshot_then_live_events(application):
    k = await kiosk(application)
    snapshot = await k.receive_json_from()
    assert snapshot == {
        "type": "snapshot",
        "board": "lobby",
        "sessions": [],
        "stats": {"active": 0, "by_band": {"low": 0, "moderate": 0, "high": 0}},
    }
    publisher = boards.BoardPublisher("lobby", "abc123")
    publisher.publish(risk=0.42, band="moderate")
    event = await k.receive_json_from(timeout=2)
    assert event["type"] == "session" and event["id"] == "abc123"
    assert event["risk"] == 0.42 and event["band"] == "moderate" and event["updated_at"].endswith("Z")
    await publisher.close()
    assert await k.receive_json_from(timeout=2) == {"type": "session_end", "id": "abc123"}
    await k.disconnect()


async def test_late_kiosk_gets_the_session_in_its_snapshot(application):
    publisher = boards.BoardPublisher("ward-3", "s1")
    publisher.publish(risk=0.7, band="high")
    await asyncio.sleep(0.05)
    k = await kiosk(application, "ward-3")
    snapshot = await k.receive_json_from()
    assert [s["id"] for s in snapshot["sessions"]] == ["s1"]
    assert snapshot["stats"] == {"active": 1, "by_band": {"low": 0, "moderate": 0, "high": 1}}
    await publisher.close()
    await k.disconnect()


async def test_boards_are_separate(application):
    lobby = await kiosk(application, "lobby")
    await lobby.receive_json_from()
    publisher = boards.BoardPublisher("other", "s2")
    publisher.publish(risk=0.1, band="low")
    await asyncio.sleep(0.3)
    assert await lobby.receive_nothing(timeout=0.3)
    await publisher.close()
    await lobby.disconnect()


async def test_publishing_is_rate_limited_but_the_newest_gets_through(application):
    k = await kiosk(application)
    await k.receive_json_from()
    publisher = boards.BoardPublisher("lobby", "fast")
    for i in range(50):
        publisher.publish(risk=i / 100, band="low")
        await asyncio.sleep(0.005)
    events = []
    # receive_nothing waits without cancelling the app (a receive timeout would cancel it)
    while not await k.receive_nothing(timeout=1):
        events.append(await k.receive_json_from())
    assert events[-1]["risk"] == 0.49
    assert len(events) < 50
    await publisher.close()
    await k.disconnect()


async def test_withdraw_ends_the_session(application):
    k = await kiosk(application)
    await k.receive_json_from()
    publisher = boards.BoardPublisher("lobby", "w")
    publisher.publish(risk=0.3, band="moderate")
    assert (await k.receive_json_from(timeout=2))["type"] == "session"
    publisher.withdraw()
    assert await k.receive_json_from(timeout=2) == {"type": "session_end", "id": "w"}
    await publisher.close()
    await k.disconnect()


async def test_sessions_of_a_dead_process_expire(application, monkeypatch):
    monkeypatch.setattr(boards, "EXPIRY_SECONDS", 0.3)
    monkeypatch.setattr(boards, "PRUNE_SECONDS", 0.1)
    # An entry nobody refreshes, as if its process had died.
    await boards.board_store().put(
        "lobby", boards.Entry(id="ghost", risk=0.5, band="high", updated_at=boards.now_iso())
    )
    k = await kiosk(application)
    snapshot = await k.receive_json_from()
    assert [s["id"] for s in snapshot["sessions"]] == ["ghost"]
    assert await k.receive_json_from(timeout=3) == {"type": "session_end", "id": "ghost"}
    await k.disconnect()


async def test_kiosk_messages_never_carry_features(application):
    k = await kiosk(application)
    await k.receive_json_from()
    publisher = boards.BoardPublisher("lobby", "p")
    publisher.publish(risk=0.2, band="moderate")
    event = await k.receive_json_from(timeout=2)
    assert set(event) == {"type", "id", "risk", "band", "updated_at"}
    assert not set(event) & set(FEATURE_KEYS)
    await publisher.close()
    await k.disconnect()


async def test_kiosk_ignores_what_it_is_sent(application):
    k = await kiosk(application)
    await k.receive_json_from()
    await k.send_to(text_data='{"type": "update"}')
    assert await k.receive_nothing(timeout=0.2)
    await k.disconnect()


@pytest.mark.parametrize("path", ["/ws/kiosk/bad name/", "/ws/kiosk/" + "x" * 65 + "/"])
async def test_invalid_board_names_are_refused(application, path):
    from channels.testing import WebsocketCommunicator

    communicator = WebsocketCommunicator(application, path)
    with pytest.raises(ValueError, match="No route found"):
        await communicator.connect()


def test_kiosk_page(client):
    html = client.get("/kiosk/").content.decode()
    assert 'data-board="lobby"' in html and "js/kiosk.js" in html
    assert 'data-board="ward-3"' in client.get("/kiosk/ward-3/").content.decode()
    assert client.get("/kiosk/bad%20name/").status_code == 404
