"""The ``sql_incremental`` source: the seed's Flume JDBC reader, unable to lose or repeat rows."""
