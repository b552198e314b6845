"""Peer libraries run on the same envs for `htsrl bench` (optional extras)."""
