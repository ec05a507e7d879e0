"""Can a per-sample, per-channel affine after each conv stay in ONNX Runtime's NCHWc layout
with standard ONNX ops only?

Answer (2026-12-06, docs/benchmark.md, the NCHWc paragraph): no, not at a gain. The
symbolic batch is lost through ``Resize``, so every reorder stays; with the batch fixed the
stack stays in NCHWc but is slower still. Kept as a study because the answer belongs to
ONNX Runtime's ``NchwcTransformer``: re-run it (seconds, ONNX Runtime only) after an
upgrade. ``python -m experiments.nchwc_affine [BATCH] [ROUNDS] [static]``.
"""
