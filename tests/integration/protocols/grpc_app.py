"""A gRPC service (grpcio, raw bytes, no generated code) and its client, for the h2c tests.

`python grpc_app.py` serves on 127.0.0.1:$PORT with HTTP/2 prior knowledge (how zoo reaches an
app with `protocol = "h2c"`); `python grpc_app.py client HOST:PORT` calls it (unary,
server-streaming, an error status) and prints one line per call, trailers included, so the test
can compare the lines through zoo with the lines direct."""

import os
import sys
from concurrent import futures

import grpc


def unary(request, context):
    context.set_trailing_metadata((("x-trailer", "unary"),))
    return b"echo:" + request


def stream(request, context):
    for i in range(int(request)):
        yield f"item {i}".encode()
    context.set_trailing_metadata((("x-trailer", "stream"),))


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


HANDLER = grpc.method_handlers_generic_handler(
    "zoo.Test",
    {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    },
)


def serve():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((HANDLER,))
    server.add_insecure_port(f"127.0.0.1:{os.environ['PORT']}")
    server.start()
    server.wait_for_termination()


def client(target):
    with grpc.insecure_channel(target) as channel:
        reply, call = channel.unary_unary("/zoo.Test/Unary").with_call(b"hi", timeout=10)
        trailer = dict(call.trailing_metadata()).get("x-trailer")
        print("unary", reply.decode(), trailer, call.code().name)
        call = channel.unary_stream("/zoo.Test/Stream")(b"3", timeout=10)
        items = "|".join(message.decode() for message in call)
        trailer = dict(call.trailing_metadata()).get("x-trailer")
        print("stream", items, trailer, call.code().name)
        try:
            channel.unary_unary("/zoo.Test/Fail")(b"", timeout=10)
            print("fail", "no error")
        except grpc.RpcError as error:
            print("fail", error.code().name, error.details())


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        client(sys.argv[2])
    else:
        serve()
