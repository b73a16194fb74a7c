"""Clustering: node names, inter-node links, failure detection and the Raft core (docs/clustering.md)."""
