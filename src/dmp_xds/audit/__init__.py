"""The audit trail: every call, allowed or refused, and what it touched (by identifier only)."""
