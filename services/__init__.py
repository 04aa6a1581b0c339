"""Services the project runs itself: the embedded local cloud and the model endpoint."""
