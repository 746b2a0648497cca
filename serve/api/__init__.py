"""The HTTP API: routes, request/response models, error mapping and middleware."""
