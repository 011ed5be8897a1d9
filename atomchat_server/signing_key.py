"""The key tokens are signed with: ATOMCHAT_JWT_SECRET, or one made for this data folder.

No secret printed in the repository signs anything. Without
ATOMCHAT_JWT_SECRET, a local run (loopback only: Settings.validate refuses
any other address) makes a random secret once, keeps it in
`<data_dir>/jwt-secret` readable by its owner only (0600), and reads it
again on the next start, so tokens outlive a restart.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import replace
from pathlib import Path

from atomchat_server.config import ConfigError, Settings

FILE_NAME = "jwt-secret"
SECRET_BYTES = 48


def secret_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def with_signing_key(settings: Settings) -> Settings:
    """`settings` with a jwt_secret: the configured one, or this data folder's."""
    if settings.jwt_secret:
        return settings
    return replace(settings, jwt_secret=local_secret(settings.data_dir))


def local_secret(data_dir: Path) -> str:
    """The data folder's secret, made (mode 0600) if it has none yet."""
    path = secret_path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Written whole beside it, then linked into place: of two processes
        # starting at once, one link wins and both read the same secret.
        temporary = path.with_name(f".{FILE_NAME}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(secrets.token_urlsafe(SECRET_BYTES) + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} must be readable by its owner only: chmod 600 {path}")
    secret = path.read_text(encoding="ascii").strip()
    if not secret:
        raise ConfigError(f"{path} is empty: delete it to have a new secret made")
    return secret
