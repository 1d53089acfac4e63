"""The voice API on port 11400: REST routes, the Realtime and duplex WebSockets, errors."""
