"""Built-in sample data and synthetic tables.

`generate` renders aerial scenes of distinct regions from object generators (`scenes`,
`objects`, `render`); `synthetic` makes patch tables for tests and benchmarks.
"""
