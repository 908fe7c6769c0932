"""Peers measured beside the engine in the same benchmark run."""
