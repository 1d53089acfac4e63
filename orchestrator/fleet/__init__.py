"""The fleet: engines loaded, leased and unloaded; fallback chains, downloads, health."""
