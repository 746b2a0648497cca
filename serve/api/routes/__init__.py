"""One router per audience: customers, content owners, engineers, operations, pages."""
