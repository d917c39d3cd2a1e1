"""Execution: database, storage, Prefect flows, training context, ONNX export and serving."""
