"""Turning a trained network into deployable artifacts: ONNX (:mod:`rtseg.export.onnx`) and
TensorRT plans (:mod:`rtseg.export.tensorrt`). Each artifact carries its :class:`~rtseg.meta.ModelMeta`."""
