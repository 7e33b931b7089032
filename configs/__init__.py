"""The shipped YAML configs; installed as the package ``pipelines.configs`` (setup.py)."""
