"""Applying plans: executor, audit log, verification."""
