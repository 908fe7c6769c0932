"""Makes the shared fakes' fixtures available to the integration tests."""

from tests.fakes.fixtures import anthropic_fake, twilio_fake

__all__ = ["anthropic_fake", "twilio_fake"]
