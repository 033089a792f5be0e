#!/usr/bin/env python3
"""A stock gRPC client: discovers mmsearch through server reflection (no stubs, no .proto
files), lists its services and calls SearchService/Search with a vector query."""
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase


def main(target: str) -> None:
    channel = grpc.insecure_channel(target)
    db = ProtoReflectionDescriptorDatabase(channel)
    services = db.get_services()
    for s in services:
        print("service", s)
    pool = descriptor_pool.DescriptorPool(db)
    method = pool.FindServiceByName("mmsearch.v1.SearchService").FindMethodByName("Search")
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    request = json_format.ParseDict({"vector": {"space": "shared", "values": [1.0] + [0.05] * 7}, "topK": 3}, request_cls())
    call = channel.unary_unary(
        "/mmsearch.v1.SearchService/Search",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_cls.FromString,
    )
    response = call(request, timeout=10)
    for hit in response.hits:
        print("hit", hit.id, round(hit.score, 4))


if __name__ == "__main__":
    main(sys.argv[1])
