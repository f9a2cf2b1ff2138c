"""The `balancing` command: a thin dispatcher over the component command lines."""
