"""The read path: the read view every read fans out through, the merge of per-shard top-k lists,
query batching, keyword (BM25) search with global statistics, fusion, scroll and search by id."""
