"""The model endpoint: SageMaker's container contract plus the runtime API, with data capture."""
