"""session records: messages may have the role `system` (a session closing, kind `session_closed`)

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("ck_messages_role", "messages", type_="check")
    op.create_check_constraint(
        "ck_messages_role", "messages", "role IN ('user', 'operator', 'assistant', 'system')"
    )
    # the llm looks up the latest session boundary of a conversation
    op.create_index(
        "ix_messages_session_closed",
        "messages",
        ["conversation_id", "sent_at"],
        postgresql_where="kind = 'session_closed'",
    )


def downgrade() -> None:
    op.drop_index("ix_messages_session_closed", table_name="messages")
    op.execute("DELETE FROM messages WHERE role = 'system'")
    op.drop_constraint("ck_messages_role", "messages", type_="check")
    op.create_check_constraint("ck_messages_role", "messages", "role IN ('user', 'operator', 'assistant')")
