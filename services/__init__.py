"""Network services of the platform."""
