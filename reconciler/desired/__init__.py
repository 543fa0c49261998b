"""Desired state: policies.yaml loading and validation.

`load_desired_state(path)` reads the file; `parse_desired_state(data, filename)` (also named
`validate_text`) checks content already in memory. Both return a DesiredState or raise
ConfigError whose `problems` are one line each: `FILE:LINE:COL: path.to.key: message`.
"""

from reconciler.desired.loader import load_desired_state, parse_desired_state, validate_text

__all__ = ["load_desired_state", "parse_desired_state", "validate_text"]
