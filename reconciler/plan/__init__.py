"""Planning: rules to desired assignments, the diff, guards, fingerprint."""
