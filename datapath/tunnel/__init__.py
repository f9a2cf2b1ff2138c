"""WireGuard mesh on a node: keys, interface, peers, routes, node proxy IPv4."""
