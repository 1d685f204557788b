"""Batch recommendations: the Ray Data job against a plain loop."""
