"""Channel adapters: one package per vendor, none of them touching the database or Dramatiq."""
