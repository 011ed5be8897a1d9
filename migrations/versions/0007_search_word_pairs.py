"""search by word pairs: an index of each message's adjacent words

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 18:40:00

A phrase needs word positions, which the GIN index of `search` leaves to the
rows: "run tests" rechecks every message holding both words, wherever they
stand. search_word_pairs(search) is the tsvector of each two words that
stand next to each other ('run test'), so that its GIN index finds the
messages where the words of a phrase stand together.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Immutable, as an index expression must be: the pairs of lexemes at
    # positions p and p + 1, each pair one lexeme, its words joined by a space.
    op.execute(
        """
        CREATE FUNCTION search_word_pairs(words tsvector) RETURNS tsvector
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
          SELECT coalesce(array_to_tsvector(array_agg(DISTINCT a.lexeme || ' ' || b.lexeme)),
                          ''::tsvector)
          FROM (SELECT lexeme, unnest(positions) AS position FROM unnest(words)) AS a
          JOIN (SELECT lexeme, unnest(positions) AS position FROM unnest(words)) AS b
            ON b.position = a.position + 1
        $$
        """
    )
    op.execute(
        "CREATE INDEX ix_messages_search_pairs ON messages USING gin (search_word_pairs(search))"
    )


def downgrade() -> None:
    op.drop_index("ix_messages_search_pairs", table_name="messages")
    op.execute("DROP FUNCTION search_word_pairs(tsvector)")
