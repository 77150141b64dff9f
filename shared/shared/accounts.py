"""Accounts and API keys: registration, the caller's own view, the operator's list."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    display_name: str = Field(min_length=1, max_length=100)


class Usage(BaseModel):
    requests: int = Field(description="Text-processing requests made with this account's keys.")
    cache_hits: int = Field(description="Of those, answered from the cache.")
    provider_calls: int = Field(description="Of those, that reached the AI provider.")
    input_tokens: int = Field(
        default=0, description="Tokens sent to the AI provider (estimated for the local model)."
    )
    output_tokens: int = Field(
        default=0, description="Tokens the AI provider answered (estimated for the local model)."
    )


class Limits(BaseModel):
    tier: str
    requests_per_minute: int


class AccountInfo(BaseModel):
    id: int
    email: str
    display_name: str
    tier: str
    active: bool = Field(description="False once an operator revoked the account.")
    key_prefix: str | None = Field(description="The start of the current key, for recognising it.")
    created_at: datetime
    usage: Usage
    limits: Limits


class RegisterResponse(BaseModel):
    account: AccountInfo
    api_key: str = Field(description="Shown once: only a hash is stored.")


class RotateResponse(BaseModel):
    api_key: str = Field(description="The new key, shown once; the previous key stops working.")
    key_prefix: str


class AccountList(BaseModel):
    items: list[AccountInfo]
    total: int
