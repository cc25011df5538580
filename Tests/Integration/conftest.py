"""pytest setup for the integration tests: they need the release binary (or MGE_BINARY)."""
import os

import pytest

from mge_helpers import BINARY


@pytest.fixture(scope="session", autouse=True)
def _binary_is_there():
    if not (BINARY.is_file() and os.access(BINARY, os.X_OK)):
        pytest.fail(f"expected an executable microgrid-edge at {BINARY} "
                    f"(build it with `swift build -c release --static-swift-stdlib`, or set MGE_BINARY)", pytrace=False)


@pytest.fixture
def broker(tmp_path):
    """A real mosquitto on a free 127.0.0.1 port with the shipped ACL file and the default
    users (see mqtt_broker.Broker); stopped, with every client it made, after the test."""
    from mqtt_broker import Broker   # imported here: only MQTT tests need paho-mqtt
    with Broker(tmp_path / "broker") as b:
        yield b
