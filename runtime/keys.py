"""API keys: random secrets shown once; only their sha256 is stored."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.errors import NotFoundError
from runtime.db import ApiKey, utcnow
from runtime.runs import get_service

KEY_PREFIX = "aib_"


def hash_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, service_id: str) -> tuple[str, ApiKey]:
    """Create a key for `service_id`; returns (the secret key, its record). The secret is not stored."""
    get_service(session, service_id)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(id=f"key_{secrets.token_hex(6)}", service_id=service_id, key_hash=hash_key(key))
    session.add(record)
    session.commit()
    return key, record


def revoke_key(session: Session, key_or_id: str) -> ApiKey:
    """Revoke a key given either the secret key or its id (`key_…`)."""
    record = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key_or_id)))
    if record is None:
        record = session.get(ApiKey, key_or_id)
    if record is None:
        raise NotFoundError("no such API key (give the key itself or its id from `aib keys list`)")
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        session.commit()
    return record


def _unrevoked(session: Session, key: str) -> ApiKey | None:
    record = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    return record if record is not None and record.revoked_at is None else None


def find_active_key(session: Session, key: str, service_id: str) -> ApiKey | None:
    """The unrevoked key record matching `key` for `service_id`, or None."""
    record = _unrevoked(session, key)
    return record if record is not None and record.service_id == service_id else None


def find_active_key_of(session: Session, key: str, name: str) -> ApiKey | None:
    """The unrevoked key record matching `key` for any version of service `name` (its stable endpoint), or None."""
    from runtime.db import Service

    record = _unrevoked(session, key)
    service = session.get(Service, record.service_id) if record is not None else None
    return record if service is not None and service.name == name else None


def list_keys(session: Session, service_id: str | None = None) -> list[ApiKey]:
    """Key records (never the secrets), newest first."""
    q = select(ApiKey).order_by(ApiKey.created_at.desc())
    if service_id:
        q = q.where(ApiKey.service_id == service_id)
    return list(session.scalars(q))


__all__ = ["create_key", "find_active_key", "find_active_key_of", "hash_key", "list_keys", "revoke_key"]
