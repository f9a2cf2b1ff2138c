"""Node-level datapath: BPF loader and map writer, WireGuard tunnels, routes, events.

This package talks to the kernel and to nothing else: it imports no Kubernetes client.
"""
