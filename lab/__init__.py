"""The local federation lab: real control planes and simulated nodes on one Linux host."""
