"""The shared Twilio fake fixture for the notify tests."""

from tests.fakes.fixtures import twilio_fake

__all__ = ["twilio_fake"]
