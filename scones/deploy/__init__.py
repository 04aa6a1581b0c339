"""Deploying the workflow: package the Lambdas and definitions, then create or update template.yaml's stack."""
