"""Accounts: registration and sign-in, devices' sessions (token families), access tokens,
password hashing."""
