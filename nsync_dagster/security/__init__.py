"""Staging's security posture: reading it, comparing it with production's, the access review."""
