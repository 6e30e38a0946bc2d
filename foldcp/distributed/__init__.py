"""Context parallelism: one complex's pair representation tiled over an r × c GPU grid.

See README.md ("Context parallelism") for the map of this package.
"""
