"""Storage: SQLAlchemy 2.0 models, engines and migrations (SQLite by default, PostgreSQL)."""
