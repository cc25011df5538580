"""pytest setup for the integration tests: they need the release binary (or MGE_BINARY)."""
import os

import pytest

from mge_helpers import BINARY


@pytest.fixture(scope="session", autouse=True)
def _binary_is_there():
    if not (BINARY.is_file() and os.access(BINARY, os.X_OK)):
        pytest.fail(f"expected an executable microgrid-edge at {BINARY} "
                    f"(build it with `swift build -c release`, or set MGE_BINARY)", pytrace=False)
