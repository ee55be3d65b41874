"""Generated protobuf code for the obscura.v1 wire schema: `from obscura._proto import obscura_pb2`."""
