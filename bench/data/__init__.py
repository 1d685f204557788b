"""Import at scale: ``prepare`` of a synthetic Amazon review dump."""
