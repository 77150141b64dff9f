"""AI model adapters; `local_engine` is the offline heuristic model that needs no provider."""
