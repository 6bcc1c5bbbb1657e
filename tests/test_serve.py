"""project/serve.py: the production options as daphne's defaults, and the start-up check."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from daphne.ws_protocol import WebSocketProtocol

from project import serve


def test_the_production_options_are_the_defaults():
    args = serve.ServingCommandLineInterface().parser.parse_args(["-b", "127.0.0.1", "-p", "8000", "asgi:application"])
    assert {name: getattr(args, name) for name in serve.PRODUCTION_OPTIONS} == serve.PRODUCTION_OPTIONS
    assert serve.PRODUCTION_OPTIONS == {
        "websocket_timeout": -1,
        "websocket_connect_timeout": 10,
        "ping_interval": 20,
        "ping_timeout": 30,
        "application_close_timeout": 10,
        "websocket_max_message_size": 65536,
        "websocket_max_frame_size": 65536,
    }


def test_a_flag_given_on_the_command_line_wins():
    parser = serve.ServingCommandLineInterface().parser
    args = parser.parse_args(["--ping-interval", "1", "--ping-timeout", "2", "asgi:application"])
    assert (args.ping_interval, args.ping_timeout, args.websocket_timeout) == (1, 2, -1)


def test_the_installed_versions_have_everything_serve_relies_on():
    serve.check_dependencies(serve.ServingCommandLineInterface().parser)


def test_a_missing_attribute_stops_the_start_naming_the_versions(monkeypatch):
    monkeypatch.delattr(WebSocketProtocol, "serverSend")
    with pytest.raises(SystemExit) as stopped:
        serve.ServingCommandLineInterface()
    message = str(stopped.value)
    assert "daphne WebSocketProtocol.serverSend" in message
    assert "daphne 4." in message and "autobahn " in message and "Twisted " in message


def test_a_missing_option_stops_the_start(monkeypatch):
    monkeypatch.setitem(serve.PRODUCTION_OPTIONS, "websocket_send_queue", 1)
    with pytest.raises(SystemExit) as stopped:
        serve.ServingCommandLineInterface()
    assert "daphne option websocket_send_queue" in str(stopped.value)


def test_what_serve_relies_on_is_pinned_at_the_installed_versions():
    """daphne's own ranges would let an upgrade of autobahn or Twisted in: both are pinned."""
    requirements = (Path(serve.__file__).resolve().parent.parent / "requirements.txt").read_text()
    pins = dict(line.split("==", 1) for line in requirements.splitlines() if "==" in line and not line.startswith("#"))
    for name in ("daphne", "autobahn", "Twisted"):
        assert pins[name].split()[0] == metadata.version(name), name
