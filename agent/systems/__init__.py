"""The demo company's two systems (CRM and billing): interfaces, SQLite implementations, HTTP adapters."""
