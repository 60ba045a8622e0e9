"""Customer authentication of the client API: login, logout, tokens, sessions."""
