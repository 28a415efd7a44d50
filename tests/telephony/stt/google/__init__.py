"""Tests of the Google speech engines against local fake Google servers."""
