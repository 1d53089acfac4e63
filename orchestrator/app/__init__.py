"""The running server's wiring: the runtime every front-end shares, and its secrets."""
