"""mllp."""
