"""Model formats: plug-ins, the bundle, signatures, and save/load/log."""
