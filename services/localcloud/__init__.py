"""The embedded, docker-free local cloud: moto's server plus the patches in patches.py."""
