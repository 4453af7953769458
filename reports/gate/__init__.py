"""The regression gate's verdict: an A/B gate folder (written by `ragload bench-ci`) read into a table."""
