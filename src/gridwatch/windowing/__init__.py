"""The columnar bin engine that jobs use: extraction, cells, bin tables, sketches, spreading."""
