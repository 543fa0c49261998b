"""Desired state: policies.yaml loading and validation."""
