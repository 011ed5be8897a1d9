"""usernames unique under confusables; a token cutoff per user

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 12:20:00

Adds users.username_key (NFKC + case folding + the TR39 skeleton, computed
in Python by atomchat_server.domain.usernames) with a unique constraint, and
users.tokens_valid_after. Existing rows get their keys here; if two existing
usernames are confusable, the upgrade stops and names them, so that an
operator can rename one before trying again.
"""

from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from atomchat_server.domain.usernames import username_key

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


class ConfusableUsernamesError(RuntimeError):
    """Existing usernames that the new constraint would refuse."""


def upgrade() -> None:
    op.add_column("users", sa.Column("username_key", sa.Text(), nullable=True))
    op.add_column(
        "users", sa.Column("tokens_valid_after", sa.DateTime(timezone=True), nullable=True)
    )
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, username FROM users")).all()
    by_key: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_key[username_key(row.username)].append(row.username)
    clashes = [sorted(names) for names in by_key.values() if len(names) > 1]
    if clashes:
        listed = "; ".join(", ".join(repr(name) for name in names) for names in clashes)
        raise ConfusableUsernamesError(
            f"these usernames look alike and cannot all stay: {listed}. "
            "Rename all but one of each group, then run the migration again."
        )
    if rows:
        connection.execute(
            sa.text(
                "UPDATE users SET username_key = k.key"
                " FROM unnest(CAST(:ids AS bigint[]), CAST(:keys AS text[])) AS k(id, key)"
                " WHERE users.id = k.id"
            ),
            {
                "ids": [row.id for row in rows],
                "keys": [username_key(row.username) for row in rows],
            },
        )
    op.alter_column("users", "username_key", nullable=False)
    op.create_unique_constraint(op.f("uq_users_username_key"), "users", ["username_key"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_users_username_key"), "users", type_="unique")
    op.drop_column("users", "tokens_valid_after")
    op.drop_column("users", "username_key")
