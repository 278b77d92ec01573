"""The HTTP edge: the ASGI layers in front of Litestar, the route handlers, the caregiver
web page, and the mapping of domain errors to HTTP statuses and problem+json bodies."""
