"""HL7 v2 wire-format handling: MSH sniffing, the lazy message view, escapes, timestamps."""
