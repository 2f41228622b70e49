"""On-target test suite (issue 11 §3): `make test-board PORT=...` (python -m tools.board_test)."""
