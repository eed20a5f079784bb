"""What a scoring pass leaves for people to read: figures, per-source tables, summaries."""
