"""Full-duplex sessions: routing between the duplex engine and the cascade, back-ends."""
