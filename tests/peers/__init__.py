"""Small real server processes the tests talk to, each standing in for one real server."""
