"""Governance: the audit chain (and, later, roles, lineage, cards)."""
