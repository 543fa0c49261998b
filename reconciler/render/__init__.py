"""Rendering plans: one view-model; text, markdown and json."""
