"""The management console (port 8766): shows what runs where and lets an operator act on it."""
