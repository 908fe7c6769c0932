"""Scheduling domain: what SIU and ORM messages mean, independent of HL7 wire details."""
