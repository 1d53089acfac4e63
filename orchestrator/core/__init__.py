"""The lowest layer of the core: event bus, state store, metrics, the idle vocabulary."""
