"""Protocol Buffers contracts and their generated Python code.

``openai.proto`` is the C# sample's gRPC contract. Generated modules (``*_pb2.py``,
``*_pb2.pyi``, ``*_pb2_grpc.py``) are committed and regenerated with ``scripts/gen-protos.sh``;
import them as ``from protos import openai_pb2, openai_pb2_grpc``.
"""
