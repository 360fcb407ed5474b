"""Query fronts: read-only servers of the public API beside the coordinator, fed pushed layouts."""
