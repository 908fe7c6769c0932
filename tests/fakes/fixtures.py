"""Pytest fixtures starting the fakes; import them where needed: ``from tests.fakes.fixtures import ...``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fake_anthropic import FakeAnthropic
from .fake_twilio import FakeTwilio

__all__ = ["anthropic_fake", "twilio_fake"]


@pytest.fixture
def twilio_fake() -> Iterator[FakeTwilio]:
    """A started ``FakeTwilio`` (``.base_url``, ``.env()``, ``.force()``, ``.sent``, ``.requests``)."""
    fake = FakeTwilio()
    fake.start()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def anthropic_fake() -> Iterator[FakeAnthropic]:
    """A started ``FakeAnthropic`` (``.base_url``, ``.env()``, ``.reply()``, ``.requests``)."""
    fake = FakeAnthropic()
    fake.start()
    try:
        yield fake
    finally:
        fake.close()
