"""Layouts: which shard owns each bucket, online resharding between layouts, and publishing
layouts to the query fronts."""
