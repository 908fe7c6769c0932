"""radsched-engine: an MLLP HL7 v2 interface engine for radiology scheduling."""

__version__ = "0.1.0"
