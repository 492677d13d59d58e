"""Accounts, roles, API tokens and sign-in throttling; `Caller` is who is asking, on every service call."""
