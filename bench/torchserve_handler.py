"""TorchServe handler for the peer benchmark: this project's own inference.py (same decode, preprocessing
and onnxruntime session) behind TorchServe's batching, as SageMaker's PyTorch container would run it.

Packed into the .mar by bench/bench_serving_peers.py with inference.py beside it; TorchServe's Python
worker imports it from the unpacked model folder.
"""

from __future__ import annotations

import numpy as np
from inference import decode, model_fn, output_fn, predict_fn  # type: ignore[import-not-found]


class SconesHandler:
    def initialize(self, context) -> None:
        self.model = model_fn(context.system_properties["model_dir"])  # threads: $SCONES_ORT_THREADS
        self.initialized = True

    def handle(self, data, context) -> list[bytes]:
        images = []
        for i, row in enumerate(data):
            body = row.get("body") or row.get("data")
            content_type = context.get_request_header(i, "Content-Type") or "image/png"
            images.append(decode(bytes(body), content_type, self.model.size))
        probs = predict_fn(np.stack(images), self.model)
        for i in range(len(data)):
            context.set_response_content_type(i, "application/json")
        return [output_fn(row[None]) for row in probs]


_service = SconesHandler()


def handle(data, context):
    if not getattr(_service, "initialized", False):
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
