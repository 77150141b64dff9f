"""`make bench`: load benchmarks of the backend on loopback, reported as ratios to bare FastAPI."""
