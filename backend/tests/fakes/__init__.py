"""Test doubles for what lies outside the process: a clock, service tiers, providers."""
