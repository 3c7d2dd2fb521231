"""conversations and messages

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("instance", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("chat_id", sa.String(128), nullable=False),
        sa.Column("push_name", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("instance", "user_id", name="uq_conversations_instance_user"),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column(
            "conversation_id",
            sa.BigInteger(),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("instance", sa.String(128), nullable=False),
        sa.Column("external_id", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("transcription_failure", sa.Text(), nullable=True),
        sa.Column("burst_id", sa.String(320), nullable=True),
        sa.Column("in_reply_to", postgresql.ARRAY(sa.String(256)), nullable=True),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("whatsapp_ids", postgresql.ARRAY(sa.String(256)), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("instance", "external_id", name="uq_messages_instance_external_id"),
        sa.CheckConstraint("role IN ('user', 'operator', 'assistant')", name="ck_messages_role"),
    )
    op.create_index("ix_messages_conversation_sent_at", "messages", ["conversation_id", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_messages_conversation_sent_at", table_name="messages")
    op.drop_table("messages")
    op.drop_table("conversations")
