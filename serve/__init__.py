"""The composition root: settings become clients; API, web pages and CLI."""
