"""Supervision console: alarm cases to closure, accuracy, training (docs/console.md)."""
