"""Pydantic contracts that the backend and the frontend share: requests, responses, errors."""
