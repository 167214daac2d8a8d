"""The one settings object, read from the environment (see README "Configuration")."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _var_dir() -> Path:
    return Path(os.environ.get("TICKETWIRE_VAR_DIR", ROOT / "var"))


def _secret_key(var_dir: Path) -> str:
    """TICKETWIRE_SECRET_KEY, or in development one generated once into var/secret_key."""
    key = os.environ.get("TICKETWIRE_SECRET_KEY")
    if key:
        return key
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    path.write_text(key)
    path.chmod(0o600)
    return key


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    secret_key: str
    public_url: str
    port: int
    var_dir: Path
    rate_limit_per_minute: int = 480
    rate_limit_per_hour: int = 4800
    send_rate_per_minute: int = 60
    send_rate_per_hour: int = 1000
    max_body_bytes: int = 1_000_000
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        """No Redis: in-process broker, caches and rate limits."""
        return not self.redis_url


def load_settings() -> Settings:
    var_dir = _var_dir()
    port = int(os.environ.get("PORT", "8000"))
    return Settings(
        database_url=os.environ.get("DATABASE_URL") or f"sqlite:///{var_dir / 'ticketwire.db'}",
        redis_url=os.environ.get("REDIS_URL") or None,
        secret_key=_secret_key(var_dir),
        public_url=os.environ.get("TICKETWIRE_PUBLIC_URL", f"http://127.0.0.1:{port}").rstrip("/"),
        port=port,
        var_dir=var_dir,
        rate_limit_per_minute=int(os.environ.get("TICKETWIRE_RATE_LIMIT_PER_MINUTE", "480")),
        rate_limit_per_hour=int(os.environ.get("TICKETWIRE_RATE_LIMIT_PER_HOUR", "4800")),
        send_rate_per_minute=int(os.environ.get("TICKETWIRE_SEND_RATE_PER_MINUTE", "60")),
        send_rate_per_hour=int(os.environ.get("TICKETWIRE_SEND_RATE_PER_HOUR", "1000")),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
