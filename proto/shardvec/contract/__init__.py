"""shardvec's contract layer: what the services and the client agree on, beside the wire code.

Every service (`coordinator/`, `shard/`) and the client (`cluster/`) import this package; it
imports none of them, only the generated `shardvec.v1` code, NumPy and the standard library.

    errors      the exception tree, one gRPC status code per class
    limits      every shared limit and default, defined once
    codec       packed float32 vectors, JSON texts
    validation  ids, vectors, metadata, collection names
    filters     the `where` language: tree, Chroma-style parser, checks
    settings    IndexSettings and CollectionSpec
    types       the domain values that cross a boundary (records, results, changes, states)
    shard_api   the shard interface (`ShardLike`), implemented by the remote client and in process
    shard_requests  a shard request's checks, made once where it is built (engines check none)
    convert     every protobuf <-> domain conversion
    store_copy  the shard snapshot format; reading a copied store
    archive     the collection snapshot archive format
    private_files  the file modes every service writes with (0600 files, 0700 directories)
"""
