"""Test helpers: a cleanup registry and per-test kernel resources (namespaces, cgroups, bpffs dirs)."""
