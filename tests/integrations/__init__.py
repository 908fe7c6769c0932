"""Tests of the Twilio, phone and Claude integrations against local fakes."""
