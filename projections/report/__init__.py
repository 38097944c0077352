"""The monitoring report: one HTML page and its SVG figures, from what the reader answers."""
