"""Ray job entrypoints: thin wrappers that wire the library (``ray job submit -- python -m workflows.<name>``)."""
