"""Metadata store: SQLAlchemy engine set-up, migrations and transactions."""
