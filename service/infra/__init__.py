"""Infrastructure with no product knowledge: embedded servers, migrations, logs, metrics,
Redis pub/sub, the collector's settings, the ASGI vocabulary."""
