"""join requests by user: an index for a user's own requests

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 15:40:00

ListMyJoinRequests reads a user's requests with one status in id order, as
ListJoinRequests reads a channel's (ix_channel_join_requests_channel_status).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_channel_join_requests_user_status",
        "channel_join_requests",
        ["user_id", "status", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_channel_join_requests_user_status", table_name="channel_join_requests")
