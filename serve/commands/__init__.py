"""CLI command groups, one module per room's commands."""
