"""The ground layer: settings, the target's environment, the boto3 factory, errors, background services.

Everything else in the project may import from here; nothing here imports from the rest of the project.
"""
