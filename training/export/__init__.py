"""Export to ONNX with both weight branches in one graph, beside a manifest."""
