"""A protoc plugin for buf: grpcio-tools' gRPC Python generator, which is
built into grpcio-tools' own protoc and has no plugin program, behind the
plugin protocol (CodeGeneratorRequest on stdin, CodeGeneratorResponse on
stdout). Used by buf.gen.yaml through scripts/gen-clients.sh."""

import os
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
response = plugin_pb2.CodeGeneratorResponse(
    supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
)
with tempfile.TemporaryDirectory() as work:
    descriptors = os.path.join(work, "descriptors.bin")
    with open(descriptors, "wb") as f:
        f.write(descriptor_pb2.FileDescriptorSet(file=request.proto_file).SerializeToString())
    out = os.path.join(work, "out")
    os.mkdir(out)
    options = f"{request.parameter}:" if request.parameter else ""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--descriptor_set_in={descriptors}",
            f"--grpc_python_out={options}{out}",
            *request.file_to_generate,
        ],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        response.error = run.stderr
    else:
        for root, _, files in os.walk(out):
            for name in sorted(files):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    response.file.add(name=os.path.relpath(path, out), content=f.read())
sys.stdout.buffer.write(response.SerializeToString())
