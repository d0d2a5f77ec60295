"""The program parameter files driftsnap ships (``*.toml``), read as package data; no code."""
