"""The extraction as it was before the fast path (commit 602dac9), kept verbatim as the tests' reference."""
