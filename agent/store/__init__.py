"""The demo company's store: seeded data generator, SQLite database, JSON import/export."""
