"""Process-wide plumbing: settings, database engine, clock, crypto, cache."""
