"""The support agent: a LangGraph graph over CRM, billing and knowledge-base tools."""
