"""`--quantize int8`: the exported model.onnx with its network in int8 (onnxruntime's static quantization).

What is quantized: the network up to its pooled features (convolutions, activations, residual adds, the pooling),
weights per output channel (signed int8), activations per tensor (unsigned int8), in the QDQ format, their ranges
calibrated on training photos (`calibration`, the normalised N×3×32×32 batch the model takes). The head, the
temperature and the softmax (FLOAT_TAIL) stay float, so the served probabilities are not rounded to 1/255 steps
at the 0.93 threshold. The artifact keeps its contract (model.onnx, one `input`, one `probabilities` output, any
batch size); onnxruntime runs QDQ models on every CPU, with int8 kernels where the CPU has them (VNNI, AMX).
Imported only when asked for: onnxruntime is in training/requirements.txt for this.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

QUANTIZE = ("none", "int8")
CALIBRATION_BATCH = 32
FLOAT_TAIL = ("Gemm", "MatMul", "Div", "Softmax")  # the head, the temperature, the softmax: never quantized


def quantize_int8(src: Path, dst: Path, calibration: np.ndarray) -> None:
    """Write `src`'s ONNX model to `dst` in int8 but for FLOAT_TAIL, activation ranges from `calibration`."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Photos(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                {"input": np.ascontiguousarray(calibration[i : i + CALIBRATION_BATCH], dtype=np.float32)}
                for i in range(0, len(calibration), CALIBRATION_BATCH)
            )

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    prepared = dst.with_name(dst.name + ".prepared")
    try:
        quant_pre_process(str(src), str(prepared))  # shape inference and graph clean-up, as onnxruntime advises
        graph = onnx.load(str(prepared)).graph
        tail = [node.name for node in graph.node if node.op_type in FLOAT_TAIL]
        quantize_static(
            str(prepared), str(dst), Photos(), quant_format=QuantFormat.QDQ, nodes_to_exclude=tail,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )  # fmt: skip
    finally:
        prepared.unlink(missing_ok=True)
