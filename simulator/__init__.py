"""The local simulator: runs a stack's containers on one Docker engine and performs cutovers."""
