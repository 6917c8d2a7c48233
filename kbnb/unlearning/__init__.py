"""Unlearning methods behind one registry, their losses and training loop, and LUNAR."""
