"""Pipeline runner: stages, caching and resume."""
