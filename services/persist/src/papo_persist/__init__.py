"""persist: writes every message, transcript, reply and delivery papo sees to PostgreSQL, in batches."""
