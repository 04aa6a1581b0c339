"""Data: CIFAR-100 download and parsing, the synthetic stand-in, staging to S3."""
