"""Integration tests against a real Label Studio 1.23.2 (marker ``labelstudio``)."""
