"""Local fakes of third-party HTTP APIs (Twilio, Anthropic) for tests; 127.0.0.1 only."""
