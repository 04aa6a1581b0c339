"""LocalStack Lambda runtime executor without Docker: see executor.py."""
