"""Changes of a collection's shape while it serves: online resharding (bucket moves between
layouts) and replica changes (raise, lower, move, rebalance). Each is persisted before it takes
effect and resumes after a restart; a collection runs one at a time."""
