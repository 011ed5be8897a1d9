"""awareness and the inbox: read markers, per-user inbox events

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 13:30:00

Members gain a read marker (existing members have read everything); users a
counter of their inbox events, which are stored (the last 1000 per user) in
inbox_events with per-user, gap-free ids. The (channel_id, seq) index of
messages carries what an unread count reads (sender, deletion, mentions), so
that counting reads the index only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "channel_members",
        sa.Column("last_read_seq", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.execute(
        "UPDATE channel_members m SET last_read_seq = c.last_seq"
        " FROM channels c WHERE c.id = m.channel_id"
    )
    op.drop_constraint("uq_messages_channel_id_seq", "messages", type_="unique")
    op.execute(
        "ALTER TABLE messages ADD CONSTRAINT uq_messages_channel_id_seq"
        " UNIQUE (channel_id, seq) INCLUDE (sender_id, deleted_at, mention_user_ids)"
    )
    op.add_column(
        "users", sa.Column("inbox_last_id", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.create_table(
        "inbox_events",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("join_request_id", sa.BigInteger()),
        sa.Column("message_id", sa.BigInteger()),
        sa.Column("change", sa.String(length=16)),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('join_request', 'join_request_decided', 'membership', 'mention')",
            name=op.f("ck_inbox_events_kind"),
        ),
        sa.CheckConstraint(
            "change IS NULL OR change IN ('added', 'removed', 'channel_deleted')",
            name=op.f("ck_inbox_events_change"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_inbox_events_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_inbox_events_channel_id_channels")
        ),
        sa.ForeignKeyConstraint(
            ["join_request_id"],
            ["channel_join_requests.id"],
            name=op.f("fk_inbox_events_join_request_id_channel_join_requests"),
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_inbox_events_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("user_id", "id", name=op.f("pk_inbox_events")),
    )


def downgrade() -> None:
    op.drop_table("inbox_events")
    op.drop_column("users", "inbox_last_id")
    op.drop_constraint("uq_messages_channel_id_seq", "messages", type_="unique")
    op.create_unique_constraint("uq_messages_channel_id_seq", "messages", ["channel_id", "seq"])
    op.drop_column("channel_members", "last_read_seq")
