"""Model environments: capture a lock at log time, verify it at load, rebuild it on demand."""
