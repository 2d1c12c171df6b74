"""data_quality."""
