"""The dashboard's signing secret (CSRF tokens).

``ADMIN_SECRET_KEY`` wins. Without it a random secret is generated once and kept in
``./data/admin_secret_key`` (mode 0600), so the one-command shop needs no setup and the secret
survives restarts — a new secret at each start would invalidate every open form. A warning
says so, because several dashboard replicas must share one secret: set the variable then.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)
SECRET_FILE = "admin_secret_key"


def load_or_create_secret(configured: str | None, data_dir: Path) -> str:
    if configured:
        if len(configured) < 16:
            raise ValueError("ADMIN_SECRET_KEY: use at least 16 characters")
        return configured
    path = data_dir / SECRET_FILE
    if path.exists():
        value = path.read_text().strip()
        if len(value) >= 32:
            log.warning("ADMIN_SECRET_KEY is not set; using the secret kept in %s", path)
            return value
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    log.warning("ADMIN_SECRET_KEY is not set; generated a secret and kept it in %s", path)
    return value
