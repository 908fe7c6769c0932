"""MLLP transport: the sans-I/O frame codec and the asyncio listener."""
