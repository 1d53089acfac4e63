"""GPU telemetry, the model catalog, and the VRAM planner with its admission."""
