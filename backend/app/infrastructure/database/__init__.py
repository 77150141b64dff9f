"""SQL persistence: the engine and sessions, the tables, the migrations."""
