"""Event and session stores."""
