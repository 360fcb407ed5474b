"""Text in: the embedder pool (fair per caller) and the built-in model
(all-MiniLM-L6-v2 in NumPy)."""
