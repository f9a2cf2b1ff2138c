"""The cgroup eBPF socket load balancer: desired state, loader, map writer, reader."""
