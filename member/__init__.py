"""Member controller and node agent: export the cluster, import merged policy, program the node."""
