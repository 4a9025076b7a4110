"""identity: accounts, credentials, sign-in and tokens (JWT + JWKS), contact details."""
