"""One transformation core: the aggregation algebra and view plans both runtimes use."""
