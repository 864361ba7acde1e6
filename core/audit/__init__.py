"""Dataset audit: duplicates, patient leakage, image properties, shift from training data, likely label errors."""

from core.audit.report import AUDIT_KEYS, AuditOptions, audit_key, cached_audit, read_cached_audit, run_audit

__all__ = ["AUDIT_KEYS", "AuditOptions", "audit_key", "cached_audit", "read_cached_audit", "run_audit"]
