"""The embedded, docker-free local cloud: moto's server plus the patches in patches/ (one module per patch)."""
