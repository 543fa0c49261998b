"""authpolicy: a desired-state reconciler for Exchange Online authentication policies."""

__version__ = "0.1.0"
