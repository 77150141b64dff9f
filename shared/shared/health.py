"""Liveness and readiness contracts."""

from typing import Literal

from pydantic import BaseModel, Field

HealthState = Literal["ok", "degraded", "down"]


class LivenessResponse(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class DependencyHealth(BaseModel):
    name: str = Field(description="database, cache or ai_provider.")
    status: HealthState
    detail: str = Field(default="", description="Why the dependency is degraded or down.")


class ReadinessResponse(BaseModel):
    status: HealthState = Field(description="The worst status among the dependencies.")
    dependencies: list[DependencyHealth]
