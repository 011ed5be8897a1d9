"""Who is calling: password hashing, tokens and the authenticating interceptor."""
