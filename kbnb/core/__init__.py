"""The base layer: parameter checks and typed parameter fields, seeding and CPU thread settings
(imports nothing of kbnb outside it)."""
