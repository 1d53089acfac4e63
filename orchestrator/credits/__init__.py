"""Credits: the ledger, its arithmetic, and the simulator that replays usage traces."""
