"""A trained version taken out of the backend: ONNX networks, a JSON manifest and a runner.

``bundle`` writes an export (it needs torch and onnx); ``runner`` applies one
with numpy and onnxruntime only.  Nothing is imported here, so that importing
``segmenter.export.runner`` never pulls torch in.
"""
