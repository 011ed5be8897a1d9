"""One Settings object, read once from flags and the environment.

Flags win over environment variables, which win over the defaults:

| setting            | flag           | environment                 | default              |
|--------------------|----------------|-----------------------------|----------------------|
| host               | --host         | ATOMCHAT_HOST               | 127.0.0.1            |
| grpc_port          | --grpc-port    | ATOMCHAT_GRPC_PORT          | 50051                |
| http_port          | --http-port    | ATOMCHAT_HTTP_PORT          | 8080                 |
| database_url       |                | DATABASE_URL                | embedded PostgreSQL  |
| data_dir           | --data-dir     | ATOMCHAT_DATA_DIR           | ./.atomchat          |
| jwt_secret         |                | ATOMCHAT_JWT_SECRET         | generated, kept in   |
|                    |                |                             | data_dir (local only)|
| token_minutes      |                | ATOMCHAT_TOKEN_MINUTES      | 20                   |
| production         |                | ATOMCHAT_ENV=production     | off                  |
| heartbeat_seconds  |                | ATOMCHAT_HEARTBEAT_SECONDS  | 15                   |
| stream_buffer      |                | ATOMCHAT_STREAM_BUFFER      | 4096                 |
| auth_cache_seconds |                | ATOMCHAT_AUTH_CACHE_SECONDS | 30                   |
| stalled_stream_seconds |            | ATOMCHAT_STALLED_STREAM_SECONDS | 30               |
| presence_grace_seconds |            | ATOMCHAT_PRESENCE_GRACE_SECONDS | 5                |
| presence_notice_limit  |            | ATOMCHAT_PRESENCE_NOTICE_LIMIT  | 200              |
| shutdown_grace     |                | ATOMCHAT_SHUTDOWN_GRACE     | 3                    |
| hash_workers       |                | ATOMCHAT_HASH_WORKERS       | half the CPUs, >= 1  |
| database_timeout   |                | ATOMCHAT_DATABASE_TIMEOUT   | 10 (seconds)         |
| envoy              | --no-envoy     |                             | on                   |
| metrics_port       | --metrics-port | ATOMCHAT_METRICS_PORT       | off                  |
| database_wait_seconds |             | ATOMCHAT_DATABASE_WAIT_SECONDS | 30                |
| replicas           | --replicas     | ATOMCHAT_REPLICAS           | 1                    |
| replica_restart_seconds |           | ATOMCHAT_REPLICA_RESTART_SECONDS | 1               |
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from atomchat_server.limits import LimitSettings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)

MIN_PRODUCTION_SECRET_LENGTH = 32


class ConfigError(ValueError):
    """A setting is missing, malformed or unsafe."""


def _int(environ: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value


def _float(
    environ: Mapping[str, str], name: str, default: float, *, zero_turns_off: bool = False
) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from exc
    if zero_turns_off and value < 0:
        raise ConfigError(f"{name} must not be negative (0 turns the limit off)")
    if not zero_turns_off and value <= 0:
        raise ConfigError(f"{name} must be positive")
    return value


def _optional_port(environ: Mapping[str, str], name: str) -> int | None:
    raw = environ.get(name)
    if raw is None or raw == "":
        return None
    return _int(environ, name, 0)


def _limits(env: Mapping[str, str]) -> LimitSettings:
    defaults = LimitSettings()
    return LimitSettings(
        login_failures=_int(env, "ATOMCHAT_LOGIN_FAILURES", defaults.login_failures),
        auth_per_minute=_int(env, "ATOMCHAT_AUTH_PER_MINUTE", defaults.auth_per_minute),
        message_rate=_float(
            env, "ATOMCHAT_MESSAGE_RATE", defaults.message_rate, zero_turns_off=True
        ),
        message_burst=_int(env, "ATOMCHAT_MESSAGE_BURST", defaults.message_burst),
        streams_per_user=_int(env, "ATOMCHAT_STREAMS_PER_USER", defaults.streams_per_user),
        channels_per_hour=_int(env, "ATOMCHAT_CHANNELS_PER_HOUR", defaults.channels_per_hour),
    )


def _networks(
    environ: Mapping[str, str], name: str, default: tuple[IPNetwork, ...]
) -> tuple[IPNetwork, ...]:
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        return tuple(ipaddress.ip_network(part.strip()) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"{name} must list addresses or networks (CIDR): {exc}") from exc


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    grpc_port: int = 50051
    http_port: int = 8080
    database_url: str | None = None
    data_dir: Path = field(default_factory=lambda: Path(".atomchat"))
    # "": not configured; a local run makes one (atomchat_server/signing_key.py).
    jwt_secret: str = ""
    token_minutes: int = 20
    production: bool = False
    heartbeat_seconds: float = 15.0
    stream_buffer: int = 4096
    auth_cache_seconds: float = 30.0
    stalled_stream_seconds: float = 30.0
    presence_grace_seconds: float = 5.0
    presence_notice_limit: int = 200
    shutdown_grace: float = 3.0
    hash_workers: int = 1
    hash_queue: int = 64
    limits: LimitSettings = field(default_factory=LimitSettings)
    trusted_proxies: tuple[IPNetwork, ...] = LOOPBACK
    # A call answers within this while the database cannot (db/timeouts.py).
    database_timeout: float = 10.0
    envoy: bool = True
    metrics_port: int | None = None
    database_wait_seconds: float = 30.0
    # gRPC server processes behind the one Envoy (atomchat_server/replicas.py), and
    # the first wait before one that exited is started again.
    replicas: int = 1
    replica_restart_seconds: float = 1.0

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Read the environment, then apply flag overrides (None means "not given")."""
        env = os.environ if environ is None else environ
        defaults = cls()
        settings = cls(
            host=env.get("ATOMCHAT_HOST") or defaults.host,
            grpc_port=_int(env, "ATOMCHAT_GRPC_PORT", defaults.grpc_port),
            http_port=_int(env, "ATOMCHAT_HTTP_PORT", defaults.http_port),
            database_url=env.get("DATABASE_URL") or None,
            data_dir=Path(env.get("ATOMCHAT_DATA_DIR") or ".atomchat"),
            jwt_secret=env.get("ATOMCHAT_JWT_SECRET") or "",
            token_minutes=_int(env, "ATOMCHAT_TOKEN_MINUTES", defaults.token_minutes, minimum=1),
            production=env.get("ATOMCHAT_ENV", "").lower() == "production",
            heartbeat_seconds=_float(env, "ATOMCHAT_HEARTBEAT_SECONDS", defaults.heartbeat_seconds),
            stream_buffer=_int(env, "ATOMCHAT_STREAM_BUFFER", defaults.stream_buffer, minimum=16),
            auth_cache_seconds=_float(
                env, "ATOMCHAT_AUTH_CACHE_SECONDS", defaults.auth_cache_seconds
            ),
            stalled_stream_seconds=_float(
                env, "ATOMCHAT_STALLED_STREAM_SECONDS", defaults.stalled_stream_seconds
            ),
            presence_grace_seconds=_float(
                env, "ATOMCHAT_PRESENCE_GRACE_SECONDS", defaults.presence_grace_seconds
            ),
            presence_notice_limit=_int(
                env, "ATOMCHAT_PRESENCE_NOTICE_LIMIT", defaults.presence_notice_limit
            ),
            shutdown_grace=_float(env, "ATOMCHAT_SHUTDOWN_GRACE", defaults.shutdown_grace),
            hash_workers=_int(
                env, "ATOMCHAT_HASH_WORKERS", max(1, (os.cpu_count() or 2) // 2), minimum=1
            ),
            hash_queue=_int(env, "ATOMCHAT_HASH_QUEUE", defaults.hash_queue),
            limits=_limits(env),
            trusted_proxies=_networks(env, "ATOMCHAT_TRUSTED_PROXIES", defaults.trusted_proxies),
            database_timeout=_float(env, "ATOMCHAT_DATABASE_TIMEOUT", defaults.database_timeout),
            metrics_port=_optional_port(env, "ATOMCHAT_METRICS_PORT"),
            database_wait_seconds=_float(
                env, "ATOMCHAT_DATABASE_WAIT_SECONDS", defaults.database_wait_seconds
            ),
            replicas=_int(env, "ATOMCHAT_REPLICAS", defaults.replicas, minimum=1),
            replica_restart_seconds=_float(
                env, "ATOMCHAT_REPLICA_RESTART_SECONDS", defaults.replica_restart_seconds
            ),
        )
        given = {name: value for name, value in overrides.items() if value is not None}
        settings = replace(settings, **given)
        settings.validate()
        return settings

    def validate(self) -> None:
        for name in ("grpc_port", "http_port", "metrics_port"):
            port = getattr(self, name)
            if port is not None and not 0 <= port <= 65535:
                raise ConfigError(f"{name} must be between 0 and 65535")
        if self.database_url is not None and not self.database_url.startswith(
            ("postgresql://", "postgres://", "postgresql+asyncpg://")
        ):
            raise ConfigError("DATABASE_URL must be a postgresql:// URL")
        if self.replicas < 1:
            raise ConfigError("replicas must be at least 1")
        for name in ("grpc_port", "metrics_port"):
            port = getattr(self, name)
            if port and port + self.replicas - 1 > 65535:
                raise ConfigError(
                    f"{name} {port} leaves no room for {self.replicas} replicas "
                    "(each listens on the next port)"
                )
        if not self.jwt_secret:
            if self.production:
                raise ConfigError(
                    "ATOMCHAT_ENV=production needs ATOMCHAT_JWT_SECRET "
                    f"({MIN_PRODUCTION_SECRET_LENGTH}+ random characters)"
                )
            if not is_loopback(self.host):
                raise ConfigError(
                    f"listening on {self.host} needs ATOMCHAT_JWT_SECRET "
                    f"({MIN_PRODUCTION_SECRET_LENGTH}+ random characters): a generated secret "
                    "is for local runs only"
                )
        elif self.production and len(self.jwt_secret) < MIN_PRODUCTION_SECRET_LENGTH:
            raise ConfigError(
                f"ATOMCHAT_JWT_SECRET must be at least {MIN_PRODUCTION_SECRET_LENGTH} "
                "characters in production"
            )


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
