"""Simulators of the systems gridwatch monitors, for tests, benchmarks and demos."""
