"""mention counts from an index of their own

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 18:30:00

Unread counts read the (channel_id, seq) index from a member's marker on:
carrying every message's mention_user_ids there made each entry wider for
the few messages that mention anyone. The unique index now carries
sender_id and deleted_at only; mention counts read a partial index of the
messages that mention someone.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _seq_index(include: str) -> None:
    op.drop_constraint("uq_messages_channel_id_seq", "messages", type_="unique")
    op.execute(
        "ALTER TABLE messages ADD CONSTRAINT uq_messages_channel_id_seq"
        f" UNIQUE (channel_id, seq) INCLUDE ({include})"
    )


def upgrade() -> None:
    _seq_index("sender_id, deleted_at")
    op.execute(
        "CREATE INDEX ix_messages_mentions ON messages (channel_id, seq)"
        " INCLUDE (sender_id, deleted_at, mention_user_ids) WHERE mention_user_ids <> '{}'"
    )


def downgrade() -> None:
    op.drop_index("ix_messages_mentions", table_name="messages")
    _seq_index("sender_id, deleted_at, mention_user_ids")
