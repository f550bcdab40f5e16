"""The cache's tables: their definition from the schema, migrations, and the one writer."""
