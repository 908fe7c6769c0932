"""Patient SMS: templates, quiet hours, the sms outbox handler, Twilio status callbacks, outbox CLI."""
