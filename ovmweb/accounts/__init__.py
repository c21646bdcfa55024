"""Who may sign in: API tokens kept hashed, and sign-in attempts throttled per user and per address."""
