"""Process supervision the adapters stand on: children, restarts, probes, pidfiles, logs."""
