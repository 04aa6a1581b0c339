"""What SageMaker's containers do with the files we hand them, done here without Docker.

`optml` runs a command with a private `/opt/ml` (the container's fixed tree), `venv` builds the scratch Python
environments that stand in for a container image. The callers (inference toolkit, training drivers,
processing command) run AWS's own published code inside them.
"""
