"""The base layer: parameter checks, seeding and CPU thread settings (imports nothing of kbnb)."""
