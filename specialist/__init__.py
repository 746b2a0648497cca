"""specialist: shared kernel (the exception hierarchy) of the support-agent service."""

__version__ = "0.1.0"
