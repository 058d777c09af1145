"""gridwatch scheduler."""
