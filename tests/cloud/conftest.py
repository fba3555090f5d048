"""Google's Pub/Sub emulator and moto (SQS and SNS), once per test session.

Both run as real servers on 127.0.0.1. Without gcloud and Java, or without
moto, their tests skip saying what is missing, except with ``CI=true``, where
a missing broker must fail the run rather than quietly leave a transport
untested.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.servers.cloud_brokers import (
    DUMMY_AWS,
    BrokerProcess,
    moto_missing,
    moto_server,
    pubsub_emulator,
    pubsub_emulator_missing,
)


def require(reason: str | None) -> None:
    """Skip for a missing broker; fail instead under CI=true."""
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the cloud intake tests must run)", pytrace=False)
    pytest.skip(reason)


def _started(broker: BrokerProcess) -> BrokerProcess:
    try:
        broker.start()
    except RuntimeError as error:
        require(str(error))
    return broker


@pytest.fixture(scope="session")
def pubsub_emulator_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a Pub/Sub emulator shared by the session (the PUBSUB_EMULATOR_HOST)."""
    require(pubsub_emulator_missing())
    emulator = _started(pubsub_emulator(tmp_path_factory.mktemp("pubsub")))
    try:
        yield emulator.host
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://host:port`` of a moto server (SNS, SQS) shared by the session."""
    require(moto_missing())
    moto = _started(moto_server(tmp_path_factory.mktemp("moto")))
    try:
        yield f"http://{moto.host}"
    finally:
        moto.stop()


@pytest.fixture
def pubsub_env(pubsub_emulator_host: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Points Google's client library at the emulator, as operators do."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator_host)
    return pubsub_emulator_host


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Dummy AWS credentials in the standard variables, and moto's endpoint."""
    for name, value in DUMMY_AWS.items():
        monkeypatch.setenv(name, value)
    return moto_endpoint
