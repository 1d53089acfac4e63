"""Engine adapters: one file per engine, each behind the small contract in `services.base`.

An adapter knows how to load, unload, probe and call one engine. It holds no policy: when to
load, what to evict and what to do on failure are the orchestrator's decisions.
"""
