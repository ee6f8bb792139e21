"""Measuring runs: reports, suites, quality scores, comparisons, timelines, turns."""
