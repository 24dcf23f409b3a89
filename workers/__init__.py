"""Worker processes: one control worker, one arch worker per LXD host and arch."""
