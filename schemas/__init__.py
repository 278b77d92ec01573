"""msgspec wire types only (no logic beyond field validation)."""
