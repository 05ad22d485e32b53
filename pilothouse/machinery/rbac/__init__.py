"""RBAC data and pure helpers: the bootstrap policy kube-apiserver installs, and aggregation."""
