"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 11:18:40.245493
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("slug", sa.String(length=120), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("member_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint("last_seq >= 0", name=op.f("ck_channels_last_seq_not_negative")),
        sa.CheckConstraint("member_count >= 0", name=op.f("ck_channels_member_count_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channels")),
    )
    op.create_index(
        "uq_channels_name_active",
        "channels",
        ["name"],
        unique=True,
        postgresql_where=sa.text("is_active"),
    )
    op.create_index(
        "uq_channels_slug_active",
        "channels",
        ["slug"],
        unique=True,
        postgresql_where=sa.text("is_active"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("username", sa.String(length=32), nullable=False),
        sa.Column("hashed_password", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), server_default="user", nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("role IN ('user', 'moderator')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "channel_join_requests",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "(status = 'pending') = (decided_at IS NULL)",
            name=op.f("ck_channel_join_requests_decided_iff_not_pending"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'rejected')",
            name=op.f("ck_channel_join_requests_status"),
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_channel_join_requests_channel_id_channels"),
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["users.id"], name=op.f("fk_channel_join_requests_decided_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_channel_join_requests_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_join_requests")),
    )
    op.create_index(
        "ix_channel_join_requests_channel_status",
        "channel_join_requests",
        ["channel_id", "status", "id"],
        unique=False,
    )
    op.create_index(
        "uq_channel_join_requests_pending",
        "channel_join_requests",
        ["channel_id", "user_id"],
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "channel_members",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("is_owner", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "joined_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_channel_members_channel_id_channels")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_channel_members_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_members")),
        sa.UniqueConstraint(
            "channel_id", "user_id", name=op.f("uq_channel_members_channel_id_user_id")
        ),
    )
    op.create_index("ix_channel_members_user_id", "channel_members", ["user_id"], unique=False)
    op.create_index(
        "uq_channel_members_one_owner",
        "channel_members",
        ["channel_id"],
        unique=True,
        postgresql_where=sa.text("is_owner"),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("sender_id", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("client_message_id", sa.String(length=128), nullable=True),
        sa.CheckConstraint(
            "char_length(content) BETWEEN 1 AND 4000", name=op.f("ck_messages_content_length")
        ),
        sa.CheckConstraint("seq > 0", name=op.f("ck_messages_seq_positive")),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_messages_channel_id_channels")
        ),
        sa.ForeignKeyConstraint(
            ["sender_id"], ["users.id"], name=op.f("fk_messages_sender_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("channel_id", "seq", name=op.f("uq_messages_channel_id_seq")),
    )
    op.create_index(
        "uq_messages_client_message_id",
        "messages",
        ["channel_id", "sender_id", "client_message_id"],
        unique=True,
        postgresql_where=sa.text("client_message_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_messages_client_message_id",
        table_name="messages",
        postgresql_where=sa.text("client_message_id IS NOT NULL"),
    )
    op.drop_table("messages")
    op.drop_index(
        "uq_channel_members_one_owner",
        table_name="channel_members",
        postgresql_where=sa.text("is_owner"),
    )
    op.drop_index("ix_channel_members_user_id", table_name="channel_members")
    op.drop_table("channel_members")
    op.drop_index(
        "uq_channel_join_requests_pending",
        table_name="channel_join_requests",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("ix_channel_join_requests_channel_status", table_name="channel_join_requests")
    op.drop_table("channel_join_requests")
    op.drop_table("users")
    op.drop_index(
        "uq_channels_slug_active", table_name="channels", postgresql_where=sa.text("is_active")
    )
    op.drop_index(
        "uq_channels_name_active", table_name="channels", postgresql_where=sa.text("is_active")
    )
    op.drop_table("channels")
