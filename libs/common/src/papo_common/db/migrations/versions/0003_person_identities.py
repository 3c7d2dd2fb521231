"""person identities: every phone JID and @lid of a person, mapped to their one conversation

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "person_identities",
        sa.Column("instance", sa.String(128), primary_key=True),
        sa.Column("jid", sa.String(128), primary_key=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_person_identities_user", "person_identities", ["instance", "user_id"])


def downgrade() -> None:
    op.drop_index("ix_person_identities_user", table_name="person_identities")
    op.drop_table("person_identities")
