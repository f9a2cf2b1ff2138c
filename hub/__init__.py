"""Hub operator: aggregates member exports, allocates node proxy IPs, plans the tunnel mesh, pushes policy."""
