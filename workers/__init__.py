"""Dramatiq actors and the periodic jobs. The database is the truth; the broker only wakes workers."""
