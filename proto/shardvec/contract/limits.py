"""Every limit and default that more than one part of shardvec relies on, defined once.

The coordinator's edge, the shard service, the engine and the client all read these, so a
request the edge accepts is never refused further in for a different rule.
"""

from __future__ import annotations

# Vectors and collections.
METRICS = ("cosine", "dot", "euclidean")
MAX_DIM = 65_536
MAX_SHARDS = 256  # at creation and at every scale: one limit, checked in CollectionSpec
MAX_REPLICAS = 8

# Rows.
MAX_ID_BYTES = 512
MAX_METADATA_BYTES = 65_536  # the default; `shardvec up --max-metadata-bytes` sets the edge's
MAX_DOCUMENT_BYTES = 1_048_576  # a row's document text, UTF-8; `--max-document-bytes` likewise
MAX_DOCUMENT_FILTER_CHARS = 4096  # a where_document substring
MAX_METADATA_KEYS = 256
MAX_KEY_CHARS = 256
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# Filters (the `where` language).
MAX_FILTER_DEPTH = 32
MAX_FILTER_NODES = 4096
MAX_IN_VALUES = 1024
MAX_FIELD_CHARS = 256

# Search. `k` and `ef` are checked against these at the edge (where an operator may lower
# them) and by the engine when it is used directly.
MAX_K = 1024
MAX_EF = 4096
# The recall@10 a collection's default searches are tuned to hold unless it names another.
DEFAULT_TARGET_RECALL = 0.95

# Scroll: rows per page when a request asks for none, and the most one page may hold (the
# coordinator's max_scroll_rows may lower it).
DEFAULT_SCROLL_ROWS = 256
MAX_SCROLL_ROWS = 10_000

# Messages and headers.
# public API, both directions: the default and the most `max_message_bytes` may be set to
PUBLIC_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# A request to a shard replica: what the coordinator sends one is a public request re-encoded
# (one shard's part of it), or a group-commit batch of at most 32 MiB, so a replica refuses
# anything larger without reading it whole.
INTERNAL_MAX_REQUEST_BYTES = PUBLIC_MAX_MESSAGE_BYTES + 8 * 1024 * 1024
INTERNAL_MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # replica answers (catch-up pages, searches)
API_KEY_HEADER = "x-api-key"
TOKEN_HEADER = "x-shardvec-internal"
# A query front's layout epoch on a shard read (0 or absent: the coordinator's, not fenced).
EPOCH_HEADER = "x-shardvec-epoch"

# Replica defaults (engine, actor and coordinator settings all start from these).
DEFAULT_BUILD_THREADS = 1  # hnswlib threads adding a write batch to the index
DEFAULT_CHECKPOINT_ROWS = 20_000  # changed rows between index checkpoints
# ... or this share of the index's labels, once that is more: each checkpoint writes the whole
# index, so a fixed interval costs a growing replica time quadratic in its rows (at 200k rows a
# replica, the checkpoints already took 6 % of its load's CPU); a share keeps the bytes written
# per row changed bounded (about 1 / share index sizes in all) at any size, and the rows a
# restart after a crash replays at most this share of the index.
CHECKPOINT_SHARE = 0.1
DEFAULT_SCRUB_ROWS_PER_S = 2000  # rows a replica's background scrub checks per second (0: off)
DEFAULT_SEARCH_THREADS = 1  # engine used directly; the cluster resolves 0 to the node's CPUs
DEFAULT_SWEEP_ROWS_PER_S = 1000  # expired rows a replica's background sweep removes a second
# The sweep removes a row this long after it expired (reads hide it at once): an update the
# coordinator accepted just before the expiry still finds the row on every replica.
SWEEP_GRACE_S = 10.0

# Expiry (issue 28): a TTL is a number of seconds in (0, MAX_TTL_SECONDS]; an absolute expiry
# lies in the future and at most MAX_TTL_SECONDS ahead.
MAX_TTL_SECONDS = 100 * 365 * 86_400  # a hundred years

# Text in (embedding functions). A collection's `embedding` names one of EMBEDDINGS (with the
# dimension its vectors have) or is "" (vectors only). The model reads at most
# MAX_EMBED_TOKENS word pieces of a text (the rest is cut, as sentence-transformers does);
# MAX_QUERY_TEXT_BYTES bounds the work one query text can ask of the tokenizer.
EMBEDDINGS = {"minilm": 384}  # all-MiniLM-L6-v2
MAX_EMBED_TOKENS = 256
MAX_QUERY_TEXT_BYTES = 65_536

# Keyword and hybrid search (issue 18). A collection's documents are indexed with one of
# TEXT_TOKENIZERS (SQLite FTS5 tokenizers: "unicode61", or "porter" = unicode61 then Porter
# stemming). A text query is at most MAX_TEXT_QUERY_BYTES UTF-8 bytes and MAX_TEXT_QUERY_TERMS
# terms. Hybrid: each leg is searched HYBRID_DEPTH_FACTOR * k deep (at most max_k, at least k)
# and fused by reciprocal rank (rank constant DEFAULT_RRF_K, at most MAX_RRF_K) or by a
# weighted sum of min-max normalised scores (the vector leg weighs DEFAULT_ALPHA).
TEXT_TOKENIZERS = ("unicode61", "porter")
DEFAULT_TEXT_TOKENIZER = "unicode61"
MAX_TEXT_QUERY_BYTES = 4096
MAX_TEXT_QUERY_TERMS = 64
FUSIONS = ("rrf", "weighted")
DEFAULT_RRF_K = 60
MAX_RRF_K = 10_000
DEFAULT_ALPHA = 0.5
HYBRID_DEPTH_FACTOR = 4

# Group-by, facets and diverse results (shardvec.contract.groups, shardvec.contract.facets).
# A grouped search returns groups * group_size hits per query, and MMR reranks at most
# MAX_K candidates: both within the k cap. A facet returns at most MAX_FACET_LIMIT values.
DEFAULT_GROUPS = 10
DEFAULT_GROUP_SIZE = 3
DEFAULT_FACET_LIMIT = 10
MAX_FACET_LIMIT = 1000
MMR_CANDIDATES_FACTOR = 4  # candidates when a diverse search names none: 4 k, within MAX_K
