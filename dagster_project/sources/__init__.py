"""Source connectors: one interface per kind of source (see base), implementations beside it."""
