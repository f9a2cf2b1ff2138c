"""API types of balancing.elf.io (pydantic) and the CRD YAML generated from them."""
