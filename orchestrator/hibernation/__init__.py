"""The idle ladder, its single writer, and what DORMANT does to the host."""
