"""Shared fixtures for herald's Python tests.

Run: PYTHONPATH=<build>/python /usr/bin/python3 -m pytest tests/python
The herald CLI is looked up in $HERALD_BUILD_DIR (default <repo>/build)."""
import os
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("HERALD_BUILD_DIR", REPO / "build"))


def wait_until(predicate, timeout=60.0, interval=0.005, message="condition"):
    """Polls `predicate` until it is true; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture
def herald_module():
    try:
        import herald
    except ImportError as exc:  # pragma: no cover - environment problem, reported clearly
        pytest.fail(f"cannot import herald ({exc}); set PYTHONPATH=<build>/python")
    return herald


@pytest.fixture(autouse=True)
def _fresh_registries():
    """Every test starts and ends with empty process-wide registries."""
    if "herald" not in sys.modules:
        try:
            import herald  # noqa: F401
        except ImportError:
            yield
            return
    herald = sys.modules["herald"]
    herald.PublisherRegistry.reset()
    herald.SubscriberRegistry.reset()
    yield
    herald.PublisherRegistry.reset()
    herald.SubscriberRegistry.reset()


@pytest.fixture
def herald_bin():
    path = BUILD_DIR / "herald"
    if not path.exists():
        pytest.skip(f"{path} is not built (set HERALD_BUILD_DIR to a build with the herald CLI)")
    return path


@pytest.fixture
def python_env():
    """Environment for subprocesses running Python scripts that import herald."""
    env = dict(os.environ)
    import herald

    pkg_parent = str(Path(herald.__file__).resolve().parents[1])
    env["PYTHONPATH"] = pkg_parent + os.pathsep + env.get("PYTHONPATH", "")
    return env
